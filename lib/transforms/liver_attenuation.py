"""A fatty liver made from any liver in a training crop: its CT number lowered by the phantom generator's
fatty-liver shift.

Fat lowers the liver's attenuation in every phase: a fatty liver without contrast can be darker than the spleen,
muscle and bowel wall (12 and 20 HU in the two held-out phantoms the demo model missed entirely), and a training
set of a few dozen studies holds few of them. This transform lowers the liver label's voxels (its vessels and any
tumour with it, so that a lesion keeps its contrast to the liver around it) by one shift drawn from the range the
generator draws a fatty liver's from (lib.data.phantoms.tissues.FATTY_LIVER_SHIFT: one tissue model, two users),
over an edge blurred to the scan's partial volume; the scan's noise and texture stay. A liver moved to any CT
number instead (0 to 125 HU) was tried: it taught the network that the liver's CT number says nothing, and on a real
CT it called bowel and muscle liver (TotalSegmentator CT liver Dice 0.90 -> 0.60). A floor (`floor_hu`) keeps the
lowered liver's median CT number at or above a value: the shift applied to a liver that is fatty already, or dark
without contrast, takes it to the CT number of urine and fluid-filled bowel. MONAI's intensity transforms shift a
whole image or channel; none shifts one labelled structure.

A bright liver (`RandBrightLiverd`) is the other end: an enhanced liver raised further, as a larger contrast dose, a
smaller patient or other timing raise it. The generator draws a portal-venous liver from 98 to 125 HU; the networks
trained on the phantoms lost most of such livers 20 HU brighter, and the brighter part of a real one (docs/model-log.md,
"What the real livers lose"). Only a liver already enhanced (median at or above `enhanced_hu`) is raised: an
unenhanced one stays as it is.
"""

from __future__ import annotations

from typing import Hashable, Sequence

import numpy as np
import torch
from monai.transforms import MapTransform, RandomizableTransform
from scipy import ndimage

from ..data.phantoms.tissues import FATTY_LIVER_SHIFT
from .preprocess import WINDOW_SPAN_HU, window_to_hu
from .synthesis import like, median_of

MIN_LIVER_VOXELS = 500
EDGE_SIGMA = 0.6  # voxels: the blur of the liver's edge, about a voxel's partial volume
BRIGHT_LIVER_SHIFT = (10.0, 30.0)  # HU: a portal-venous liver from the generator's 98-125 HU to up to 155 HU
ENHANCED_LIVER_HU = 90.0  # the generator's unenhanced and arterial livers lie under it, its portal-venous ones
# over (but fatty ones)


class _RandLiverShiftd(RandomizableTransform, MapTransform):
    """The liver label's voxels (liver and tumour) moved by one shift drawn from `shift_hu`, over an edge blurred to
    the scan's partial volume, with chance `prob`; `shift_for` decides from the liver's median CT number (label 1)
    what shift applies, if any."""

    def __init__(self, keys: Sequence[Hashable], prob: float, shift_hu: tuple[float, float]) -> None:
        MapTransform.__init__(self, keys)
        RandomizableTransform.__init__(self, prob)
        self.image_key, self.label_key = keys
        self.shift_hu = shift_hu

    def shift_for(self, drawn_hu: float, liver_hu: float) -> float | None:
        raise NotImplementedError

    def __call__(self, data):
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        drawn_hu = self.R.uniform(*self.shift_hu)
        image, label = d[self.image_key], d[self.label_key]
        classes = np.asarray(torch.as_tensor(label)[0].cpu())
        liver = classes == 1
        if liver.sum() < MIN_LIVER_VOXELS:
            return d
        pixels = torch.as_tensor(image)[0].float().cpu().numpy()
        shift_hu = self.shift_for(drawn_hu, window_to_hu(median_of(pixels[liver])))
        if shift_hu is None:
            return d
        weight = ndimage.gaussian_filter((classes >= 1).astype(np.float32), EDGE_SIGMA)
        moved = np.clip(pixels + shift_hu / WINDOW_SPAN_HU * weight, 0.0, 1.0)
        d[self.image_key] = like(image, torch.as_tensor(moved[None]))
        return d


class RandFattyLiverd(_RandLiverShiftd):
    def __init__(self, keys: Sequence[Hashable] = ("image", "label"), prob: float = 0.3,
                 shift_hu: tuple[float, float] = FATTY_LIVER_SHIFT,
                 floor_hu: float | None = None) -> None:
        """keys: the image (1, X, Y, Z), the network's input (the HU window scaled to 0..1), and its label 0/1/2.
        prob: the chance a crop's liver is made fatty; shift_hu: the range its change of CT number is drawn from;
        floor_hu: the lowest median CT number the liver (label 1) is lowered to (a liver already under it stays as it
        is)."""
        super().__init__(keys, prob, shift_hu)
        self.floor_hu = floor_hu

    def shift_for(self, drawn_hu: float, liver_hu: float) -> float | None:
        if self.floor_hu is None:
            return drawn_hu
        shift_hu = max(drawn_hu, self.floor_hu - liver_hu)
        return shift_hu if shift_hu < 0 else None


class RandBrightLiverd(_RandLiverShiftd):
    def __init__(self, keys: Sequence[Hashable] = ("image", "label"), prob: float = 0.3,
                 shift_hu: tuple[float, float] = BRIGHT_LIVER_SHIFT,
                 enhanced_hu: float = ENHANCED_LIVER_HU) -> None:
        """keys: as RandFattyLiverd's. prob: the chance a crop's enhanced liver is raised; shift_hu: the
        range its rise is drawn from; enhanced_hu: the lowest median CT number (label 1) of a liver it raises."""
        super().__init__(keys, prob, shift_hu)
        self.enhanced_hu = enhanced_hu

    def shift_for(self, drawn_hu: float, liver_hu: float) -> float | None:
        return drawn_hu if liver_hu >= self.enhanced_hu else None
