"""What an annotator wants to know about a segmentation: volumes, lesion count and sizes, in the returned
label's own geometry."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..metrics.lesions import max_diameter_mm


def lesion_report(label: np.ndarray, affine: np.ndarray) -> dict:
    """label (X, Y, Z) 0/1/2 on the grid of `affine`."""
    voxel_ml = abs(float(np.linalg.det(np.asarray(affine)[:3, :3]))) / 1000.0
    tumour, count = ndimage.label(label == 2, structure=np.ones((3, 3, 3)))
    counts = np.bincount(tumour.ravel())[1:] if count else np.array([], dtype=np.int64)
    sizes = counts * voxel_ml
    largest = 0.0
    if count:
        index = int(np.argmax(counts))
        box = ndimage.find_objects(tumour)[index]
        largest = max_diameter_mm(tumour[box] == index + 1, np.asarray(affine)[:3, :3])
    return {
        "label_names": {"background": 0, "liver": 1, "tumour": 2},
        "liver_volume_ml": round(float((label == 1).sum() * voxel_ml), 2),
        "tumour_volume_ml": round(float((label == 2).sum() * voxel_ml), 3),
        "tumour_count": int(count),
        "lesion_volumes_ml": [round(float(v), 3) for v in sorted(sizes, reverse=True)],
        "largest_lesion_diameter_mm": round(largest, 1),
    }


class LesionReportd:
    """lesion_report of the final label, merged into the result JSON."""

    def __init__(self, label_key: str, json_key: str) -> None:
        self.label_key, self.json_key = label_key, json_key

    def __call__(self, data):
        d = dict(data)
        pred = d[self.label_key]
        report = lesion_report(np.asarray(pred.cpu()), np.asarray(pred.affine.cpu()))
        d[self.json_key] = {**d.get(self.json_key, {}), **report}
        return d
