"""Where a label's liver differs from the truth, in millilitres: what it adds (and of that, how much lies far from
the liver and below it) and what it misses. Dice folds all of these into one number; a model that calls the bowel
liver and one that trims the liver's edge can share it."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

NEAR_MM = 20.0  # added liver within this of the true liver is mostly its outline's error; farther, another organ's


def liver_volume_errors(pred: np.ndarray, truth: np.ndarray, affine: np.ndarray, near_mm: float = NEAR_MM) -> dict:
    """mL of the whole liver (liver and tumour) that pred adds and misses against truth (same grid; affine to RAS
    world, axes orthogonal): `liver_added_ml` in all, `liver_added_far_ml` more than near_mm from the true liver,
    of it `liver_added_below_ml` more than near_mm below the true liver's lowest point, and `liver_missed_ml`.
    With no true liver, all that pred calls liver is far (and none below: there is no lowest point)."""
    p, t = np.asarray(pred) > 0, np.asarray(truth) > 0
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    added = p & ~t
    far, below = added, 0
    if t.any() and added.any():
        # the distance transform over the true liver's box widened by near_mm: an added voxel outside it is
        # farther than that along one axis already (the whole volume would take GiBs on a 512 x 512 x 400 study)
        box = _box(t, np.floor(near_mm / spacing).astype(int) + 1)
        far = added.copy()
        far[box] = added[box] & (ndimage.distance_transform_edt(~t[box], sampling=spacing) > near_mm)
        lowest = _superior_mm(affine, np.nonzero(t)).min()
        below = int((_superior_mm(affine, np.nonzero(far)) < lowest - near_mm).sum())
    ml = float(abs(np.linalg.det(affine[:3, :3]))) / 1000.0
    counts = {"liver_added_ml": added.sum(), "liver_added_far_ml": far.sum(), "liver_added_below_ml": below,
              "liver_missed_ml": (t & ~p).sum()}
    return {k: round(float(n) * ml, 1) for k, n in counts.items()}


def _box(mask: np.ndarray, pad: np.ndarray) -> tuple[slice, ...]:
    idx = np.nonzero(mask)
    return tuple(slice(max(0, int(i.min()) - d), int(i.max()) + d + 1) for i, d in zip(idx, pad))


def _superior_mm(affine: np.ndarray, index: tuple[np.ndarray, ...]) -> np.ndarray:
    """The RAS world S coordinate (mm) of the voxels at these array indices, whatever the array's orientation."""
    return affine[2, :3] @ np.stack(index).astype(np.float64) + affine[2, 3]
