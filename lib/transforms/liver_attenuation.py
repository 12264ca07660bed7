"""The liver moved to another CT number in a training crop: fatty, non-contrast, arterial and portal-venous livers
from any study.

Phantoms and patients put the liver anywhere from about 0 HU (a fatty liver without contrast) to 125 HU (portal
venous phase), and a training set of a few dozen studies holds few of the low end: the demo model missed both
held-out non-contrast fatty livers (12 and 20 HU) entirely. This transform shifts the liver label's voxels (its
vessels and any tumour with it, so that a lesion keeps its contrast to the liver around it) by one change of CT
number, so that the liver's median lands on a value drawn from `hu`, over an edge blurred to the scan's partial
volume. The noise and texture of the scan stay. MONAI's intensity transforms shift a whole image or a whole
channel; none shifts one labelled structure.
"""

from __future__ import annotations

from typing import Hashable, Sequence

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import MapTransform, RandomizableTransform
from scipy import ndimage

from .preprocess import HU_WINDOW

MIN_LIVER_VOXELS = 500
EDGE_SIGMA = 0.6  # voxels: the blur of the liver's edge, about a voxel's partial volume


class RandLiverAttenuationd(RandomizableTransform, MapTransform):
    def __init__(self, keys: Sequence[Hashable] = ("image", "label"), prob: float = 0.3,
                 hu: tuple[float, float] = (0.0, 125.0), window: tuple[float, float] = HU_WINDOW) -> None:
        """keys: the image (1, X, Y, Z), windowed to 0..1 over `window` HU, and its label 0/1/2. prob: the chance
        a crop's liver is moved; hu: the range its median CT number is drawn from."""
        MapTransform.__init__(self, keys)
        RandomizableTransform.__init__(self, prob)
        self.image_key, self.label_key = keys
        self.hu, self.window = hu, window

    def __call__(self, data):
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        target = self.R.uniform(*self.hu)
        image, label = d[self.image_key], d[self.label_key]
        organ = np.asarray(torch.as_tensor(label)[0].cpu()) >= 1
        liver = np.asarray(torch.as_tensor(label)[0].cpu()) == 1
        if liver.sum() < MIN_LIVER_VOXELS:
            return d
        lo, hi = self.window
        pixels = torch.as_tensor(image)[0].float().cpu().numpy()
        shift = (target - (float(np.median(pixels[liver])) * (hi - lo) + lo)) / (hi - lo)
        weight = ndimage.gaussian_filter(organ.astype(np.float32), EDGE_SIGMA)
        moved = np.clip(pixels + shift * weight, 0.0, 1.0)
        tensor = torch.as_tensor(moved[None], dtype=torch.as_tensor(image).dtype, device=torch.as_tensor(image).device)
        d[self.image_key] = MetaTensor(tensor, meta=image.meta) if isinstance(image, MetaTensor) else tensor
        return d

