"""Crop centres on tumour balanced by lesion: every lesion of a study as likely to be a crop's centre as any other.

Why: MONAI's ClassesToIndicesd lists a class's voxels, and RandCropByLabelClassesd centres a tumour crop on any of
them alike, so a lesion is chosen in proportion to its volume: a 40 mm lesion about 37 times as often as a 12 mm
one. The models trained so far find nearly every lesion of 16 mm or more and few of 10 to 15 mm, in the studies
they trained on as in held-out ones (docs/model-log.md). Like blob loss for the loss, this counts each lesion once for
the sampling. MONAI has no per-instance crop sampling; this rewrites the tumour class's indices once per study,
cached with its pre-processing.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.transforms import MapTransform
from scipy import ndimage

from ..metrics.lesions import CONNECTED, TUMOUR


def balanced_indices(indices: np.ndarray, label: np.ndarray, limit: int) -> np.ndarray:
    """Flat tumour indices (into label's shape) -> the same number per connected lesion of the label (at most
    limit in all, at least one per lesion that has any), evenly spread over each lesion's own, repeated where a
    lesion has fewer: a uniform pick among them picks each lesion alike."""
    if len(indices) == 0:
        return indices
    parts, n = ndimage.label(label == TUMOUR, structure=CONNECTED)
    owner = parts.ravel()[indices]
    present = np.unique(owner[owner > 0])
    if len(present) < 2:
        return indices
    share = max(1, limit // len(present))
    chosen = []
    for lesion in present:
        own = indices[owner == lesion]
        chosen.append(own[np.linspace(0, len(own) - 1, share).round().astype(np.int64)])
    return np.sort(np.concatenate(chosen))


class LesionBalancedCentresd(MapTransform):
    """Rewrites the tumour class's crop centres (key: ClassesToIndicesd's list, one index tensor per class) so that
    each lesion of label_key counts once."""

    def __init__(self, key: str, label_key: str, limit: int) -> None:
        super().__init__(keys=[key])
        self.key, self.label_key, self.limit = key, label_key, limit

    def __call__(self, data):
        d = dict(data)
        classes = list(d[self.key])
        if len(classes) > TUMOUR:
            label = np.asarray(d[self.label_key])[0]
            tumour = np.asarray(classes[TUMOUR])
            classes[TUMOUR] = torch.as_tensor(balanced_indices(tumour, label, self.limit), dtype=torch.int64)
        d[self.key] = classes
        return d
