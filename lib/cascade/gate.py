"""Keep the label near the liver the locator found.

The full-resolution model sometimes calls a neighbouring organ liver: in studies without contrast, the stomach
beside the left lobe (about 400 mL in three of the 20 tuning phantoms), joined to the liver so broadly that neither
the largest component nor the cut of thin strands (lib/transforms/postprocess.py) removes it. The locator's 4 mm
liver does not make that mistake, so labelled voxels farther than `liver_gate_mm` from it are dropped, before the
clean-up. Off by default: on the real TotalSegmentator CT the locator finds a third of the liver, and the gate cut
the rest (docs/model-log.md). MONAI's transforms filter labels by their own components, not by a mask on another grid.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import MapTransform
from scipy import ndimage

from .crop import CASCADE
from .locate import CoarseLiver


def near_coarse_liver(label: np.ndarray, affine: np.ndarray, liver: CoarseLiver, distance_mm: float) -> np.ndarray:
    """label (X, Y, Z) on the grid of `affine`, with every labelled voxel whose nearest voxel of the coarse grid
    lies farther than distance_mm from the coarse liver set to 0 (a copy). The coarse grid covers the scan; a voxel
    beyond its last whole block takes the block at the edge."""
    near = ndimage.distance_transform_edt(~liver.mask, sampling=nib.affines.voxel_sizes(liver.affine)) <= distance_mm
    ijk = np.nonzero(label)
    to_coarse = np.linalg.inv(liver.affine) @ np.asarray(affine, float)
    coarse = np.rint(to_coarse[:3, :3] @ np.stack(ijk).astype(np.float64) + to_coarse[:3, 3:]).astype(np.intp)
    coarse = np.clip(coarse, 0, np.array(near.shape)[:, None] - 1)
    far = ~near[tuple(coarse)]
    out = np.array(label, copy=True)
    out[tuple(i[far] for i in ijk)] = 0
    return out


class NearCoarseLiverd(MapTransform):
    """near_coarse_liver on a (1, X, Y, Z) label of the cascade's region, when the locator found a liver; what it
    removed goes into the result JSON (`liver_gate`)."""

    def __init__(self, key: str, json_key: str, distance_mm: float) -> None:
        super().__init__(keys=[key])
        self.key, self.json_key, self.distance_mm = key, json_key, distance_mm

    def __call__(self, data):
        d = dict(data)
        region = d.get(CASCADE, {}).get("region")
        liver = region.liver if region is not None else None
        if liver is None or self.distance_mm <= 0:
            return d
        pred = d[self.key]
        label = np.asarray(torch.as_tensor(pred)[0].cpu())
        gated = near_coarse_liver(label, np.asarray(pred.affine, float), liver, self.distance_mm)
        removed = int(np.count_nonzero(label) - np.count_nonzero(gated))
        voxel_ml = float(np.prod(nib.affines.voxel_sizes(np.asarray(pred.affine, float)))) / 1000.0
        d[self.key] = MetaTensor(torch.as_tensor(gated[None]), meta=pred.meta,
                                 applied_operations=pred.applied_operations)
        d[self.json_key] = {**d.get(self.json_key, {}),
                            "liver_gate": {"distance_mm": self.distance_mm, "removed_ml": round(removed * voxel_ml, 2)}}
        return d
