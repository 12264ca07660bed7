"""The seed's pre-processing, the one path from a loaded study to the network's input, and the sliding windows
fitted to what comes out of it. Inference, training, validation, scoring and the benchmarks all use these."""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from monai.transforms import (
    CropForegroundd,
    EnsureChannelFirstd,
    EnsureTyped,
    Orientationd,
    ScaleIntensityRanged,
)

from ..settings import HU_WINDOW
from .resample import AxisSpacingd

WINDOW_SPAN_HU = HU_WINDOW[1] - HU_WINDOW[0]  # the network's input is this span of HU scaled to 0..1


def hu_to_window(hu):
    """CT numbers (a number, array or tensor) as the network's input sees them, not clipped to 0..1."""
    return (hu - HU_WINDOW[0]) / WINDOW_SPAN_HU


def window_to_hu(x):
    """The network's input (a number, array or tensor) as CT numbers."""
    return x * WINDOW_SPAN_HU + HU_WINDOW[0]


def preprocessing(spacing: Sequence[float], keys: Sequence[str] = ("image",), label_key: str | None = None
                  ) -> list[Callable]:
    """Orientation to RAS, resampling to `spacing` (nearest neighbour for the label), the HU window scaled to 0..1,
    crop to the body."""
    keys = list(keys)
    modes = ["bilinear" if k != label_key else "nearest" for k in keys]
    return [
        EnsureChannelFirstd(keys=keys),
        Orientationd(keys=keys, axcodes="RAS"),
        # float32 resampling: MONAI's default float64 takes a quarter longer here and 1 HU does not need it;
        # MONAI's Spacingd, axis by axis (lib/transforms/resample.py)
        AxisSpacingd(keys=keys, pixdim=tuple(spacing), mode=modes, dtype=torch.float32),
        ScaleIntensityRanged(keys="image", a_min=HU_WINDOW[0], a_max=HU_WINDOW[1], b_min=0.0, b_max=1.0, clip=True),
        CropForegroundd(keys=keys, source_key="image", allow_smaller=True),
        EnsureTyped(keys=keys),
    ]


def fitted_roi(shape: Sequence[int], roi: Sequence[int], overlap: float) -> tuple[int, int, int]:
    """The smallest windows (multiples of 16, at most `roi`) that cover `shape` with as many windows per axis as
    `roi` needs at this overlap. A 224-voxel liver region takes two 160-voxel windows per axis, 96 voxels of them
    overlapping; two 128-voxel windows cover it at the same 25% overlap with half the voxels."""
    out = []
    for n_voxels, r in zip(shape, roi):
        count = 1 if n_voxels <= r else 1 + math.ceil((n_voxels - r) / (r * (1 - overlap)))
        fitted = n_voxels / (1 + (count - 1) * (1 - overlap))
        out.append(int(min(r, max(16, 16 * math.ceil(fitted / 16)))))
    return tuple(out)  # type: ignore[return-value]
