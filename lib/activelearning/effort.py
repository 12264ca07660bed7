"""What an annotator changes when correcting the model's label of a study into the truth: the cost of acquiring a
study in MONAI Label's loop, where annotators edit a pre-annotation rather than draw from nothing.

Per class it is what the app's `label_change` scoring records for a saved label (lib.scoring.label_change), plus
the voxels that differ and the lesions to draw (true lesions the model missed) or to delete (predicted lesions on
no true one), as LiTS matches lesions (lib.metrics.lesions)."""

from __future__ import annotations

import numpy as np

from ..metrics.lesions import lesion_detection
from ..scoring.label_change import per_class_change


def annotation_effort(model_label: np.ndarray, truth: np.ndarray, affine: np.ndarray) -> dict:
    """model_label, truth: 0/1/2 labels on the grid of `affine`."""
    if model_label.shape != truth.shape:
        raise ValueError(f"the model's label {model_label.shape} and the truth {truth.shape} differ in shape")
    voxel_ml = abs(float(np.linalg.det(np.asarray(affine)[:3, :3]))) / 1000.0
    changed = int((model_label != truth).sum())
    lesions = lesion_detection(model_label, truth, affine)
    drawn = lesions["true_lesions"] - lesions["found"]
    return {
        "voxels_changed": changed,
        "ml_changed": round(changed * voxel_ml, 3),
        "lesions_drawn": drawn,
        "lesions_deleted": lesions["false_positives"],
        "lesion_edits": drawn + lesions["false_positives"],
        **per_class_change(model_label, truth, voxel_ml),
    }
