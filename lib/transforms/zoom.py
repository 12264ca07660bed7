"""Resampling as pymirc's `zoom3d` does it, which pyliverlesionseg's networks were trained and are run behind.

Axis by axis, with both grids centred on each other (the new size is ceil(size x zoom)): enlarging interpolates
linearly between voxel centres, with 0 outside the volume; shrinking averages the old voxels that each new one
covers, weighted by the overlap (so no detail is skipped). MONAI's and SciPy's resamplers align grids and
weight voxels differently, and pymirc brings numba: the same operators are written here as sparse matrices.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Callable, Sequence

import numpy as np
from scipy import sparse


@lru_cache(maxsize=64)
def zoom_matrix(size: int, zoom: float) -> sparse.csr_matrix:
    """(new size, size): the weights that take `size` voxels to ceil(size x zoom) along one axis."""
    delta = 1.0 / zoom
    if zoom > 1:
        new = math.ceil(size / delta)
        centre = delta * (np.arange(new) - 0.5 * new + 0.5) + 0.5 * size - 0.5  # new centres in old voxels
        left = np.floor(centre).astype(int)
        rows, cols, weights = [], [], []
        for index, weight in ((left, left + 1 - centre), (left + 1, centre - left)):
            inside = (index >= 0) & (index < size)
            rows.append(np.arange(new)[inside])
            cols.append(index[inside])
            weights.append(weight[inside])
    elif zoom < 1:
        new = math.ceil(size / delta)
        old = np.arange(size)
        start = (1.0 / delta) * (old - 0.5 * size) + 0.5 * new  # each old voxel's extent in new voxels
        stop = (1.0 / delta) * (old + 1 - 0.5 * size) + 0.5 * new
        first, last = np.floor(start).astype(int), np.ceil(stop).astype(int) - 1
        cut = np.ceil(start)
        one = first == last
        rows = [first[one], first[~one], last[~one]]
        cols = [old[one], old[~one], old[~one]]
        weights = [np.full(int(one.sum()), 1.0 / delta), (cut - start)[~one], (stop - cut)[~one]]
    else:
        return sparse.identity(size, format="csr")
    matrix = sparse.coo_matrix((np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))),
                               shape=(new, size))
    return matrix.tocsr()  # duplicates (two old voxels in one new one) are summed


def zoom3d(volume: np.ndarray, zoom: Sequence[float], box: Sequence[slice] | None = None,
           prepare: Callable[[np.ndarray], np.ndarray] | None = None,
           workers: int = min(4, os.cpu_count() or 1)) -> np.ndarray:
    """The volume resampled by `zoom` per axis (axis 0 first, as pymirc), float32. With `box` (slices of the
    resampled grid), only that part of the result, from the block of input voxels it needs alone; `prepare` is
    applied to that block first (a voxel-wise step such as a window). Each axis is done in slabs across another
    axis on `workers` threads (SciPy's sparse products run on one)."""
    matrices = [zoom_matrix(int(n), float(z)) for n, z in zip(np.shape(volume), zoom)]
    block = [slice(None)] * 3
    if box is not None:
        for axis, part in enumerate(box):
            rows = matrices[axis][part]
            first, last = (int(rows.indices.min()), int(rows.indices.max()) + 1) if rows.indices.size else (0, 0)
            matrices[axis] = rows[:, first:last]
            block[axis] = slice(first, last)
    out = np.asarray(volume[tuple(block)], dtype=np.float32)
    if prepare is not None:
        out = prepare(out)
    for axis, (matrix, z) in enumerate(zip(matrices, zoom)):
        if box is not None or z != 1:
            out = _apply(out, axis, matrix, workers)
    return np.ascontiguousarray(out)


def _apply(volume: np.ndarray, axis: int, matrix: sparse.csr_matrix, workers: int) -> np.ndarray:
    shape = list(volume.shape)
    shape[axis] = matrix.shape[0]
    out = np.empty(shape, np.float32)
    across = 2 if axis != 2 else 0  # slabs across an axis that is not the one resampled
    cuts = np.linspace(0, volume.shape[across], workers + 1).astype(int)

    def slab(i: int) -> None:
        part = [slice(None)] * 3
        part[across] = slice(int(cuts[i]), int(cuts[i + 1]))
        moved = np.moveaxis(volume[tuple(part)], axis, 0)
        flat = matrix @ moved.reshape(moved.shape[0], -1)
        out[tuple(part)] = np.moveaxis(np.asarray(flat, np.float32).reshape((matrix.shape[0],) + moved.shape[1:]),
                                       0, axis)

    if min(shape) > 0:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(slab, [i for i in range(workers) if cuts[i + 1] > cuts[i]]))
    return out


def zoomed_shape(shape: Sequence[int], zoom: Sequence[float]) -> tuple[int, int, int]:
    return tuple(zoom_matrix(int(n), float(z)).shape[0] for n, z in zip(shape, zoom))  # type: ignore[return-value]


def reach(zoom_axis: tuple[int, float], first: int, last: int) -> tuple[int, int]:
    """The resampled voxels [a, b) along one axis (size, zoom) that take any weight from old voxels first..last."""
    matrix = zoom_matrix(*zoom_axis).tocsc()[:, first:last + 1]
    rows = matrix.indices
    return (int(rows.min()), int(rows.max()) + 1) if rows.size else (0, 0)
