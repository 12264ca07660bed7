"""From anatomy to a CT volume: rasterise at a fine resolution, average into voxels (partial volume), blur with
the scanner's point spread, add spatially correlated noise, and store as int16 HU, slab by slab."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from .acquisition import Acquisition, Grid
from .anatomy import Anatomy
from .canvas import Canvas
from .tissues import label_lut

FINE_VOXELS_PER_SLAB = 12_000_000  # bounds memory: a 512 x 512 x 400 study renders in about 1 GB


@dataclass
class Rendered:
    """Arrays in the canonical LPS order of the grid."""

    image: np.ndarray  # int16 HU
    label: np.ndarray  # uint8: 0 background, 1 liver, 2 tumour
    tissue: np.ndarray | None  # uint8 tissue id at each voxel centre
    tissue_ml: np.ndarray  # volume of each tissue id (mL), measured on the fine grid


def _block_mean(a: np.ndarray, ss: tuple[int, int, int]) -> np.ndarray:
    nx, ny, nz = (n // s for n, s in zip(a.shape, ss))
    return a.reshape(nx, ss[0], ny, ss[1], nz, ss[2]).mean(axis=(1, 3, 5), dtype=np.float32)


class NoiseStream:
    """Noise correlated in plane (the reconstruction kernel) and between neighbouring slices."""

    def __init__(self, rng: np.random.Generator, grid: Grid, acq: Acquisition):
        self.rng, self.sd, self.rho = rng, grid.noise_sd, acq.noise_rho_z
        self.sigma = acq.grain_mm / grid.spacing[0]
        self.previous: np.ndarray | None = None

    def slab(self, nx: int, ny: int, nz: int) -> np.ndarray:
        out = np.empty((nx, ny, nz), np.float32)
        for k in range(nz):
            white = self.rng.standard_normal((nx, ny), dtype=np.float32)
            if self.sigma > 0.3:
                white = gaussian_filter(white, self.sigma, truncate=3.0)
            white /= white.std() + 1e-12
            if self.previous is not None:
                white = self.rho * self.previous + np.sqrt(1 - self.rho**2) * white
            self.previous = white
            out[:, :, k] = white
        return out * self.sd


def render(anatomy: Anatomy, acq: Acquisition, grid: Grid, lut: np.ndarray, rng: np.random.Generator,
           with_tissue: bool = False) -> Rendered:
    nx, ny, nz = grid.shape
    sx, sy, sz = grid.supersample
    xs, ys = grid.fine_axis(0, 0, nx), grid.fine_axis(1, 0, ny)
    image = np.empty(grid.shape, np.int16)
    label = np.empty(grid.shape, np.uint8)
    tissue_out = np.empty(grid.shape, np.uint8) if with_tissue else None
    labels_of = label_lut()
    texture_amp = np.zeros(256, np.float32)
    for tissue_id, amp in anatomy.textured().items():
        texture_amp[tissue_id] = amp
    noise = NoiseStream(rng, grid, acq)
    xy_axes = grid.axes()[:2]
    outside_fov = ((xy_axes[0][:, None] - acq.fov_centre[0]) ** 2 + (xy_axes[1][None, :] - acq.fov_centre[1]) ** 2
                   > (acq.fov_mm / 2) ** 2)
    psf = (acq.psf_mm / grid.spacing[0], acq.psf_mm / grid.spacing[1], 0.0)
    counts = np.zeros(256, np.int64)
    per_slice = nx * sx * ny * sy * sz
    step = max(1, FINE_VOXELS_PER_SLAB // per_slice)

    for k0 in range(0, nz, step):
        k1 = min(nz, k0 + step)
        cv = Canvas(xs, ys, grid.fine_axis(2, k0, k1))
        anatomy.paint(cv)
        t = cv.tissue
        counts += np.bincount(t.ravel(), minlength=256)
        hu = lut[t]
        amp = texture_amp[t]
        ii, jj, kk = np.nonzero(amp)
        hu[ii, jj, kk] += amp[ii, jj, kk] * anatomy.texture(cv.xs[ii], cv.ys[jj], cv.zs[kk])[0]
        hu = _block_mean(hu, (sx, sy, sz))
        if max(psf) > 0.25:
            hu = gaussian_filter(hu, psf, truncate=3.0)
        hu += noise.slab(nx, ny, k1 - k0)

        classes = labels_of[t]
        fractions = [_block_mean((classes == c).astype(np.float32), (sx, sy, sz)) for c in (1, 2)]
        background = 1.0 - fractions[0] - fractions[1]
        label[:, :, k0:k1] = np.argmax(np.stack([background, *fractions]), axis=0).astype(np.uint8)

        hu = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)
        hu[outside_fov] = acq.pad_value
        image[:, :, k0:k1] = hu
        if tissue_out is not None:
            tissue_out[:, :, k0:k1] = t[sx // 2 :: sx, sy // 2 :: sy, sz // 2 :: sz]
    fine_ml = float(np.prod(grid.spacing)) / (sx * sy * sz) / 1000.0
    return Rendered(image, label, tissue_out, counts * fine_ml)
