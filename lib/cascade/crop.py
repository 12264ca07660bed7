"""Crop a loaded study to the locator's region before the full-resolution stage, and paste the label back into a
volume of the study's own shape and geometry after it (the box comes from lib/cascade/locate.py)."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import MapTransform

from .locate import Locator, whole

CASCADE = "cascade_region"  # where the region and the full study's geometry travel between the two transforms


class CropToLiverd(MapTransform):
    """(X, Y, Z) study in its stored voxel type -> float32 crop of the region, with the crop's own affine."""

    def __init__(self, key: str, locator: Callable[[], Locator | str]) -> None:
        """locator: gives the Locator, or why there is none (then the region is the whole volume)."""
        super().__init__(keys=[key])
        self.key, self.locator = key, locator

    def __call__(self, data):
        d = dict(data)
        image = d[self.key]
        volume, affine = image.as_tensor().numpy(), np.asarray(image.affine, float)
        locator = self.locator()
        region = whole(volume.shape, locator) if isinstance(locator, str) else locator.locate(volume, affine)
        crop = np.ascontiguousarray(volume[region.slices], dtype=np.float32)
        shift = np.eye(4)
        shift[:3, 3] = region.start
        crop_affine = torch.as_tensor(affine @ shift)
        meta = {**image.meta, "affine": crop_affine, "original_affine": crop_affine, "spatial_shape": crop.shape}
        d[CASCADE] = {"region": region, "shape": tuple(volume.shape), "meta": dict(image.meta)}
        d[self.key] = MetaTensor(torch.from_numpy(crop), meta=meta)
        if f"{self.key}_meta_dict" in d:
            d[f"{self.key}_meta_dict"] = meta
        return d


class PasteIntoStudyd(MapTransform):
    """(X, Y, Z) label of the region -> uint8 label of the whole study, with its affine; the region goes into the
    result JSON."""

    def __init__(self, key: str, json_key: str) -> None:
        super().__init__(keys=[key])
        self.key, self.json_key = key, json_key

    def __call__(self, data):
        d = dict(data)
        cascade = d.pop(CASCADE)
        region, shape = cascade["region"], cascade["shape"]
        pred = d[self.key]
        crop = torch.as_tensor(pred).to(torch.uint8).cpu()
        expected = tuple(b - a for a, b in zip(region.start, region.stop))
        if tuple(crop.shape) != expected:
            raise RuntimeError(f"the label of the region has shape {tuple(crop.shape)}, expected {expected}")
        # laid out first axis fastest, as NIfTI stores it: nibabel writes a C-ordered volume by transposing it as it
        # goes, 0.55-0.59 s of /infer's 4 s on a 512 x 512 x 200 study against 0.06-0.08 s for this layout
        full = torch.zeros(tuple(reversed(shape)), dtype=torch.uint8).permute(*reversed(range(len(shape))))
        full[region.slices] = crop
        meta = {**cascade["meta"], "spatial_shape": shape}
        d[self.key] = MetaTensor(full, meta=meta)
        if f"{self.key}_meta_dict" in d:
            d[f"{self.key}_meta_dict"] = meta
        d[self.json_key] = {**d.get(self.json_key, {}), "region": region.to_json(shape)}
        return d
