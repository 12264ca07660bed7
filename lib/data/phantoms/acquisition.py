"""How a phantom is scanned: contrast phase, field of view, slices, noise, orientation, and the voxel grid of
each preset (the same scan, sampled on a coarser grid for `small`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .body import Body
from .tissues import PHASES

# Axis codes of the stored arrays (nibabel's convention: the direction each array axis points to), with weights.
ORIENTATIONS = {"LAS": 0.22, "RAS": 0.2, "LPS": 0.2, "LPI": 0.1, "RAI": 0.1, "RPS": 0.06, "PLS": 0.06, "ASL": 0.06}
SLICE_MM = (0.7, 0.8, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0)
SLICE_WEIGHTS = (0.08, 0.08, 0.12, 0.08, 0.08, 0.1, 0.12, 0.1, 0.08, 0.16)
PAD_VALUES = (-1024, -2048, -3024)  # what scanners store outside the reconstruction circle


@dataclass(frozen=True)
class Preset:
    matrix: int  # in-plane voxels
    max_slices: int  # `full` keeps every slice of the scan (sampled scans have 60 to 400; forced ones more)
    fine_mm: float  # voxels are rendered at about this resolution and averaged (partial volume)


PRESETS = {
    "small": Preset(96, 100, 2.0),
    "medium": Preset(160, 64, 1.6),
    "full": Preset(512, 4000, 1.25),
}


@dataclass(frozen=True)
class Acquisition:
    phase: str
    fov_mm: float
    slice_mm: float  # of the full-size scan
    n_slices: int  # of the full-size scan
    z_top: float  # body-frame z of the top of the scan
    fov_centre: tuple[float, float]  # body-frame x, y of the field of view's centre
    world_offset: tuple[float, float, float]  # world (LPS) position of the body frame's origin
    orientation: str
    dose_noise_hu: float  # noise SD at 2.5 mm slices for this patient
    grain_mm: float  # correlation length of the noise in plane
    noise_rho_z: float  # correlation of the noise between neighbouring slices
    pad_value: int
    psf_mm: float  # in-plane point spread (Gaussian SD)

    def noise_sd(self, slice_mm: float) -> float:
        return float(np.clip(self.dose_noise_hu * np.sqrt(2.5 / slice_mm), 6.0, 45.0))


@dataclass(frozen=True)
class Grid:
    """A preset's voxel grid in the canonical LPS array order (i left, j posterior, k superior)."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]  # body-frame centre of voxel (0, 0, 0)
    supersample: tuple[int, int, int]
    noise_sd: float

    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return tuple(o + s * np.arange(n) for o, s, n in zip(self.origin, self.spacing, self.shape))  # type: ignore

    def fine_axis(self, axis: int, start: int, stop: int) -> np.ndarray:
        """Body-frame coordinates of the sub-samples of voxels start..stop-1 along an axis."""
        o, s, n = self.origin[axis], self.spacing[axis], self.supersample[axis]
        centres = o + s * np.arange(start, stop)
        offsets = ((np.arange(n) + 0.5) / n - 0.5) * s
        return (centres[:, None] + offsets[None, :]).ravel()


def sample_acquisition(rng: np.random.Generator, body: Body) -> Acquisition:
    phase = PHASES[int(rng.choice(3, p=[0.15, 0.25, 0.6]))]
    half = max(body.skin.a, body.skin.b_ant, body.skin.b_post) * 1.07
    fov = float(np.clip(2 * half + rng.uniform(20, 90), 512 * 0.6, 512 * 0.95))
    fov = float(np.round(fov / 512, 4) * 512)
    slack = fov / 2 - half - 5
    cx = float(rng.uniform(-1, 1) * min(25.0, max(slack, 0)))
    cy = float(rng.uniform(-0.5, 1) * min(25.0, max(slack, 0)))
    slice_mm = float(rng.choice(SLICE_MM, p=SLICE_WEIGHTS))
    z_top = float(rng.uniform(-40, -8)) if rng.uniform() < 0.08 else float(rng.uniform(15, 90))
    length = rng.uniform(230, 420)
    n_slices = int(np.clip(round(length / slice_mm), 60, 400))
    size = (max(body.skin.a, 1) / 150.0) ** 1.5
    orientation = str(rng.choice(list(ORIENTATIONS), p=list(ORIENTATIONS.values())))
    return Acquisition(
        phase, fov, slice_mm, n_slices, z_top, (cx, cy),
        (float(-cx + rng.uniform(-5, 5)), float(-cy + rng.uniform(-5, 5)), float(rng.uniform(-600, 100))),
        orientation, float(rng.uniform(9, 14) * size), float(rng.uniform(0.5, 0.9)), float(rng.uniform(0.1, 0.45)),
        int(rng.choice(PAD_VALUES, p=[0.6, 0.25, 0.15])), float(rng.uniform(0.35, 0.6)),
    )


def grid_for(acq: Acquisition, preset: str) -> Grid:
    """The voxel grid of a preset: the same field of view and z coverage, sampled with its matrix size."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}: choose one of {', '.join(PRESETS)}")
    p = PRESETS[preset]
    dxy = acq.fov_mm / p.matrix
    length = acq.slice_mm * acq.n_slices
    nz = min(acq.n_slices, p.max_slices)
    dz = length / nz
    origin = (acq.fov_centre[0] - acq.fov_mm / 2 + dxy / 2, acq.fov_centre[1] - acq.fov_mm / 2 + dxy / 2,
              acq.z_top - length + dz / 2)
    ss = (max(1, int(np.ceil(dxy / p.fine_mm))),) * 2 + (max(1, int(np.ceil(dz / p.fine_mm))),)
    return Grid((p.matrix, p.matrix, nz), (dxy, dxy, dz), origin, ss, acq.noise_sd(dz))
