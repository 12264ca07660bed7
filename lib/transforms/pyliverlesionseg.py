"""pyliverlesionseg's pre- and post-processing around its two networks (`cnn_liver_lesion_seg_CT_MR_main` for CT),
on arrays in RAS order with their voxel sizes.

The package works on arrays flipped to LPS and flips them back for the networks; every step here (centred
resampling, a median filter, symmetric structuring elements, corner-aligned zoom) gives the same result either
way, so the arrays stay in RAS order. One departure: where the liver network finds nothing, the package would take
the whole background as the liver; here the liver is empty.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np
from scipy import ndimage

from .zoom import reach, zoom3d, zoomed_shape

HU_SCALE = 1000.0  # CT numbers divided by this, clipped to +-0.2, times 2.5: -0.5..0.5 for -200..200 HU
_CONNECTIVITY_2 = ndimage.generate_binary_structure(3, 2)


def normalise_ct(hu: np.ndarray) -> np.ndarray:
    return (np.clip(np.asarray(hu, np.float32) / HU_SCALE, -0.2, 0.2) * 2.5).astype(np.float32)


def ratio(voxel_mm: Sequence[float], target_mm: Sequence[float]) -> tuple[float, float, float]:
    return tuple(float(a) / float(b) for a, b in zip(voxel_mm, target_mm))  # type: ignore[return-value]


# ---- the liver network
def liver_input(hu: np.ndarray, voxel_mm: Sequence[float], target_mm: Sequence[float]) -> np.ndarray:
    """Resampled to half the network's voxel size, median-filtered (3 voxels), resampled to its voxel size,
    normalised."""
    half = [t / 2 for t in target_mm]
    fine = median3(zoom3d(hu, ratio(voxel_mm, half)))
    return normalise_ct(zoom3d(fine, ratio(half, target_mm)))


def median3(volume: np.ndarray, workers: int = min(4, os.cpu_count() or 1)) -> np.ndarray:
    """SciPy's 3 x 3 x 3 median filter (edges mirrored), in slabs on `workers` threads (SciPy runs one): the
    same result, a slab at a time with a voxel of overlap."""
    out = np.empty_like(volume)
    n = volume.shape[2]
    cuts = np.linspace(0, n, workers + 1).astype(int)

    def slab(i: int) -> None:
        a, b = int(cuts[i]), int(cuts[i + 1])
        lo, hi = max(0, a - 1), min(n, b + 1)
        out[:, :, a:b] = ndimage.median_filter(volume[:, :, lo:hi], size=3)[:, :, a - lo: a - lo + b - a]

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(slab, [i for i in range(workers) if cuts[i + 1] > cuts[i]]))
    return out


def liver_output(probability: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Thresholded at 0.5, opened with the 18-neighbourhood around the largest 6-connected part, back to `shape`
    (the image's voxels) by linear interpolation into integers (as the package does it, on int16: a voxel is liver
    where the interpolation reaches 0.5): a bool mask."""
    found = ndimage.binary_erosion(probability > 0.5, structure=_CONNECTIVITY_2)
    parts, n = ndimage.label(found, structure=ndimage.generate_binary_structure(3, 1))
    if n == 0:
        return np.zeros(tuple(shape), bool)
    largest = parts == int(np.argmax(np.bincount(parts.ravel())[1:])) + 1
    liver = ndimage.binary_dilation(largest, structure=_CONNECTIVITY_2).astype(np.int16)
    return zoom_mask(liver, shape)


# ---- the lesion network
def lesion_input(hu: np.ndarray, liver: np.ndarray, voxel_mm: Sequence[float], target_mm: Sequence[float]
                 ) -> tuple[np.ndarray, tuple[slice, slice, slice], tuple[int, int, int]]:
    """The normalised image resampled to the network's grid, everything beyond 2 voxels (18-neighbourhood) of the
    liver set to -0.5, cropped to that neighbourhood's box. Returns the crop, its box in the resampled grid and
    that grid's shape (an empty crop when there is no liver). Only the part of the grid the liver reaches is
    resampled: the result is that of resampling all of it."""
    zoom = ratio(voxel_mm, target_mm)
    grid = zoomed_shape(hu.shape, zoom)
    found = ndimage.find_objects(liver.astype(np.uint8))
    if not found:
        return np.zeros((0, 0, 0), np.float32), (slice(0, 0),) * 3, grid
    grow = 2  # the neighbourhood's reach, in resampled voxels
    reached = [reach((n, z), s.start, s.stop - 1) for n, z, s in zip(hu.shape, zoom, found[0])]
    around = tuple(slice(max(0, a - grow), min(g, b + grow)) for (a, b), g in zip(reached, grid))
    near = ndimage.binary_dilation(zoom3d(liver.astype(np.float32), zoom, around) > 0.5,
                                   structure=ndimage.iterate_structure(_CONNECTIVITY_2, 2))
    inner = ndimage.find_objects(near.astype(np.uint8))
    if not inner:
        return np.zeros((0, 0, 0), np.float32), (slice(0, 0),) * 3, grid
    box = tuple(slice(o.start + i.start, o.start + i.stop) for o, i in zip(around, inner[0]))
    image = zoom3d(hu, zoom, box, prepare=normalise_ct)
    crop = np.clip(np.where(near[inner[0]], image, -0.5), -0.5, 0.5).astype(np.float32)
    return crop, box, grid  # type: ignore[return-value]


def lesion_output(probability: np.ndarray, box: tuple[slice, slice, slice], grid: Sequence[int],
                  shape: Sequence[int]) -> np.ndarray:
    """Thresholded at 0.5, put back in the resampled grid, back to `shape` by linear interpolation, any overlap
    counted: a bool mask."""
    lesions = np.zeros(tuple(grid), np.float32)
    lesions[box] = probability > 0.5
    return zoom_mask(lesions, shape)


def zoom_mask(mask: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """`ndimage.zoom(mask, shape / mask.shape, order=1, prefilter=False) > 0` (corner-aligned linear
    interpolation, in the mask's type: int16 rounds), computed only over the box of the output that the mask's
    non-zero voxels can reach: the rest is 0 there too."""
    out = np.zeros(tuple(shape), bool)
    found = ndimage.find_objects((mask != 0).astype(np.uint8))
    if not found:
        return out
    scale = (np.asarray(mask.shape) - 1) / np.maximum(np.asarray(shape) - 1, 1)  # input voxels per output voxel
    lo = np.array([s.start for s in found[0]]) - 1
    hi = np.array([s.stop for s in found[0]])
    start = np.maximum(0, np.floor(lo / scale)).astype(int)
    stop = np.minimum(np.asarray(shape), np.ceil(hi / scale) + 1).astype(int)
    box = ndimage.affine_transform(mask, scale, offset=start * scale, output_shape=tuple(stop - start), order=1,
                                   prefilter=False)
    out[tuple(slice(a, b) for a, b in zip(start, stop))] = box > 0
    return out
