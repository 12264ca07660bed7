"""Smoothing for studies noisier than the model has learnt: the image noise is measured on the network's input and,
above a bound, a Gaussian of a fixed width in mm takes it down before the sliding windows.

The noise is measured from the differences of in-plane neighbours in soft tissue (a robust spread, the median
absolute deviation, over 20-180 HU, every eighth slice). MONAI has smoothing (GaussianSmooth) but no noise
estimate; this is that estimate. It reads what the network sees, at the working spacing: resampling from thin
slices keeps more of the noise than from thick ones."""

from __future__ import annotations

import torch
from monai.transforms import GaussianSmooth, MapTransform

from .preprocess import WINDOW_SPAN_HU, hu_to_window

SOFT_TISSUE_HU = (20.0, 180.0)  # liver, spleen, muscle, kidney in every phase; inside the window, not clipped
MIN_VOXEL_PAIRS = 1000  # fewer pairs of soft-tissue neighbours than this: no estimate


def noise_hu(image: torch.Tensor, slice_step: int = 8) -> float | None:
    """The noise SD (HU) of a windowed image (channel, x, y, z; the network's input) from its in-plane neighbour
    differences in soft tissue; None when there is too little soft tissue to say."""
    low, high = (hu_to_window(h) for h in SOFT_TISSUE_HU)
    volume = torch.as_tensor(image)[0, :, :, ::slice_step].float()
    differences = []
    for axis in (0, 1):
        a, b = volume.narrow(axis, 0, volume.shape[axis] - 1), volume.narrow(axis, 1, volume.shape[axis] - 1)
        inside = (a > low) & (a < high) & (b > low) & (b < high)
        differences.append((a - b)[inside])
    d = torch.cat(differences)
    if d.numel() < MIN_VOXEL_PAIRS:
        return None
    mad = (d - d.median()).abs().median()
    return float(1.4826 * mad / 2 ** 0.5 * WINDOW_SPAN_HU)  # the SD of one voxel's noise, for independent neighbours


class SmoothNoisyd(MapTransform):
    """Measure the image's noise (reported under json_key's "noise_hu") and, when it is above `above_hu`, smooth
    with a Gaussian of `sigma_mm` (reported as "smoothed_sigma_mm"). above_hu 0: never smooth."""

    def __init__(self, key: str, json_key: str, above_hu: float, sigma_mm: float,
                 spacing: tuple[float, float, float]) -> None:
        super().__init__(keys=[key])
        self.key, self.json_key, self.above_hu = key, json_key, above_hu
        self.sigma_mm = sigma_mm
        self.smooth = GaussianSmooth(sigma=[sigma_mm / s for s in spacing])

    def smooths(self, noise: float | None) -> bool:
        """Whether an image of this measured noise (noise_hu's) is smoothed."""
        return self.above_hu > 0 and noise is not None and noise > self.above_hu

    def __call__(self, data):
        d = dict(data)
        noise = noise_hu(d[self.key])
        report: dict = {"noise_hu": None if noise is None else round(noise, 1)}
        if self.smooths(noise):
            d[self.key] = self.smooth(d[self.key])
            report["smoothed_sigma_mm"] = self.sigma_mm
        d[self.json_key] = {**d.get(self.json_key, {}), **report}
        return d
