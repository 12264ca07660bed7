"""The coarse stage of the cascade: find the liver at low resolution, and the box of the study to segment.

A small UNet (the locator) segments the liver on a 4 mm copy of the study. Its bounding box, widened by a margin,
becomes a box of the *original* voxel grid: the full-resolution stage then resamples, segments and inverts only
that box, and the label is pasted back into a volume of the original shape. When the liver is not found, or
touches the border of the scan, the box is the whole volume (the plain path).

MONAI has no transform that crops by a model's output in another grid, or that downsamples a volume without
first converting all of it to floating point (`Spacing` would hold a float copy of a 512 x 512 x 800 study):
both are written here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from monai.data import MetaTensor
from monai.inferers import SlidingWindowInferer
from monai.transforms import Orientation, ScaleIntensityRange
from scipy import ndimage

from ..model.autocast import AutocastInferer
from ..model.checkpoint import card_path, load_network, read_card
from ..transforms.postprocess import FULL_CONNECTIVITY, channel_argmax
from ..transforms.preprocess import HU_WINDOW
from ..transforms.resample import AxisSpacing


@dataclass(frozen=True)
class CoarseLiver:
    """The locator's liver: its largest component, (X, Y, Z) bool on the locator's RAS grid, with that grid's
    affine."""

    mask: np.ndarray
    affine: np.ndarray


@dataclass
class Region:
    """A box of the original voxel grid (start inclusive, stop exclusive per axis) and why it was chosen."""

    start: tuple[int, int, int]
    stop: tuple[int, int, int]
    cascade: bool  # False: the whole volume (no locator, liver not found, or at the border)
    reason: str
    liver_ml: float = 0.0
    seconds: float = 0.0
    liver: CoarseLiver | None = field(default=None, repr=False, compare=False)  # the locator's, when it found one

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        return tuple(slice(a, b) for a, b in zip(self.start, self.stop))  # type: ignore[return-value]

    def fraction(self, shape: tuple[int, ...]) -> float:
        return float(np.prod([b - a for a, b in zip(self.start, self.stop)]) / np.prod(shape[:3]))

    def to_json(self, shape: tuple[int, ...]) -> dict[str, Any]:
        return {**{f.name: getattr(self, f.name) for f in fields(self) if f.name != "liver"},
                "fraction_of_volume": round(self.fraction(shape), 4)}


def whole(shape: tuple[int, ...], reason: str, **kw: Any) -> Region:
    return Region((0, 0, 0), tuple(int(s) for s in shape[:3]), False, reason, **kw)  # type: ignore[arg-type]


def block_mean(volume: np.ndarray, affine: np.ndarray, target_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Average whole blocks of voxels (integer factors, no block coarser than target_mm) into float32, a slab of
    slices at a time so that no float copy of the whole volume is made; the affine follows the block centres."""
    spacing = nib.affines.voxel_sizes(affine)
    f = np.maximum(1, np.floor(target_mm / spacing + 1e-6)).astype(int)
    n = np.asarray(volume.shape[:3]) // f
    if (n < 1).any():
        f, n = np.ones(3, int), np.asarray(volume.shape[:3])
    out = np.empty(tuple(n), np.float32)
    step = max(1, 64 // f[2])  # output slices per slab
    for z0 in range(0, n[2], step):
        z1 = min(n[2], z0 + step)
        slab = np.asarray(volume[: n[0] * f[0], : n[1] * f[1], z0 * f[2]: z1 * f[2]], np.float32)
        out[:, :, z0:z1] = slab.reshape(n[0], f[0], n[1], f[1], z1 - z0, f[2]).mean((1, 3, 5))
    scale = np.eye(4)
    scale[:3, :3] = np.diag(f)
    scale[:3, 3] = (f - 1) / 2.0
    return out, affine @ scale


LOCATOR_CARD_KEYS = ("channels", "spacing_mm", "min_liver_ml")  # what the card must say to run the checkpoint


class Locator:
    """The locator network and how it is run: `locate(volume, affine)` gives the Region to segment."""

    def __init__(self, network: torch.nn.Module, spacing_mm: float, margin_mm: float, min_liver_ml: float,
                 device: str = "cpu", dtype: torch.dtype | None = None,
                 extent_mm: tuple[float, float, float] | None = None) -> None:
        """extent_mm: instead of the liver's box widened by the margin, a box of this size (along the patient's
        right-left, front-back and head-foot axes) centred on the liver, for a network that takes a window of
        fixed size; it is cut too where the liver touches the border of the scan."""
        self.network, self.spacing_mm, self.margin_mm = network.eval(), spacing_mm, margin_mm
        self.min_liver_ml, self.device, self.extent_mm = min_liver_ml, device, extent_mm
        self.inferer = AutocastInferer(SlidingWindowInferer(roi_size=(128, 128, 128), overlap=0.25, sw_batch_size=1,
                                                            mode="gaussian"), torch.device(device).type, dtype)

    def coarse_liver(self, volume: np.ndarray, affine: np.ndarray) -> MetaTensor:
        """The locator's liver (and tumour) mask, (1, X, Y, Z) on a RAS grid at spacing_mm, with its affine."""
        coarse, coarse_affine = block_mean(volume, affine, self.spacing_mm)
        image = MetaTensor(torch.from_numpy(coarse)[None], affine=torch.as_tensor(coarse_affine))
        image = Orientation(axcodes="RAS")(image)
        image = AxisSpacing(pixdim=(self.spacing_mm,) * 3, mode="bilinear")(image)
        image = ScaleIntensityRange(*HU_WINDOW, 0.0, 1.0, clip=True)(image)
        with torch.no_grad():
            logits = self.inferer(image.as_tensor()[None].to(self.device), self.network)
        mask = (channel_argmax(logits[0]) > 0).cpu()  # (1, X, Y, Z), as argmax(1) (0.1-0.4 s here)
        return MetaTensor(mask, affine=image.affine)

    def locate(self, volume: np.ndarray, affine: np.ndarray) -> Region:
        started = time.perf_counter()
        shape = volume.shape[:3]
        mask = self.coarse_liver(volume, affine)
        components, n = ndimage.label(np.asarray(mask[0]), structure=FULL_CONNECTIVITY)
        voxel_ml = self.spacing_mm ** 3 / 1000.0
        if n == 0:
            return whole(shape, "no liver found at low resolution", seconds=time.perf_counter() - started)
        sizes = np.bincount(components.ravel())[1:]
        liver_ml = float(sizes.max() * voxel_ml)
        if liver_ml < self.min_liver_ml:
            return whole(shape, f"no liver found at low resolution (largest candidate {liver_ml:.0f} mL)",
                         liver_ml=liver_ml, seconds=time.perf_counter() - started)
        largest = components == int(sizes.argmax()) + 1
        liver = CoarseLiver(largest, np.asarray(mask.affine, float))
        box = ndimage.find_objects(largest.astype(np.uint8))[0]
        lo, hi = np.array([s.start for s in box]), np.array([s.stop - 1 for s in box])
        grid = np.asarray(components.shape)
        if self.extent_mm is not None:
            start, stop = self._extent_box(lo, hi, np.asarray(mask.affine, float), affine, shape)
            return Region(start, stop, True, f"liver found: {' x '.join(f'{v:g}' for v in self.extent_mm)} mm "
                          "around it", liver_ml, time.perf_counter() - started, liver)
        # the locator's grid covers the scan; a liver within a voxel of its edge may go on outside the scan
        if (lo <= 1).any() or (hi >= grid - 2).any():
            return whole(shape, "the liver touches the border of the scan", liver_ml=liver_ml,
                         seconds=time.perf_counter() - started, liver=liver)
        start, stop = self._original_box(lo, hi, np.asarray(mask.affine, float), affine, shape)
        return Region(start, stop, True, "liver found", liver_ml, time.perf_counter() - started, liver)

    def _original_box(self, lo: np.ndarray, hi: np.ndarray, coarse_affine: np.ndarray, affine: np.ndarray,
                      shape: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The coarse box's corners (voxel edges) in original voxel indices, widened by the margin, clipped."""
        corners = np.array([[a, b, c, 1.0] for a in (lo[0] - 0.5, hi[0] + 0.5) for b in (lo[1] - 0.5, hi[1] + 0.5)
                            for c in (lo[2] - 0.5, hi[2] + 0.5)])
        ijk = (np.linalg.inv(affine) @ coarse_affine @ corners.T)[:3]
        spacing = nib.affines.voxel_sizes(affine)
        margin = self.margin_mm / spacing
        start = np.maximum(0, np.floor(ijk.min(1) - margin)).astype(int)
        stop = np.minimum(np.asarray(shape[:3]), np.ceil(ijk.max(1) + margin) + 1).astype(int)
        return tuple(int(v) for v in start), tuple(int(v) for v in stop)

    def _extent_box(self, lo: np.ndarray, hi: np.ndarray, coarse_affine: np.ndarray, affine: np.ndarray,
                    shape: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The original voxels whose centres lie within extent_mm around the coarse box's centre, clipped."""
        centre = coarse_affine @ np.append((lo + hi) / 2.0, 1.0)
        half = np.asarray(self.extent_mm, float) / 2.0
        corners = np.array([[centre[0] + a, centre[1] + b, centre[2] + c, 1.0]
                            for a in (-half[0], half[0]) for b in (-half[1], half[1]) for c in (-half[2], half[2])])
        ijk = (np.linalg.inv(affine) @ corners.T)[:3]
        start = np.maximum(0, np.ceil(ijk.min(1) - 1e-6)).astype(int)
        stop = np.minimum(np.asarray(shape[:3]), np.floor(ijk.max(1) + 1e-6) + 1).astype(int)
        return tuple(int(v) for v in start), tuple(int(v) for v in stop)


def load_locator(path: Path, device: str, dtype: torch.dtype | None, margin_mm: float,
                 extent_mm: tuple[float, float, float] | None = None) -> Locator | str:
    """The locator checkpoint at path, run as its card says; or why it cannot be (then inference takes the plain
    path and its result says why)."""
    if not path.exists():
        return f"no locator model at {path}"
    card = read_card(path)
    missing = [k for k in LOCATOR_CARD_KEYS if k not in card]
    if missing:
        return f"the locator model {path} has no card {card_path(path)} with its {', '.join(missing)}"
    network = load_network(path, 0.0, device, tuple(card["channels"]))
    return Locator(network, float(card["spacing_mm"]), margin_mm, float(card["min_liver_ml"]), device, dtype,
                   extent_mm)
