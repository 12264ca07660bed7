"""How much an annotator changed the model's label, per class (MONAI Label's Dice scoring mixes classes)."""

from __future__ import annotations

import logging

import nibabel as nib
import numpy as np
from monailabel.interfaces.datastore import Datastore, DefaultLabelTag
from monailabel.interfaces.tasks.scoring import ScoringMethod

from ..metrics.dice import dice
from ..model.network import LABELS

logger = logging.getLogger(__name__)


def per_class_change(original: np.ndarray, final: np.ndarray, voxel_ml: float) -> dict:
    """Dice between the model's (original) and the annotator's (final) label for each class, and the volume
    the annotator added and removed. A class absent from both counts as unchanged (Dice 1)."""
    out: dict = {}
    for name, c in LABELS.items():
        a, b = original == c, final == c
        agreement = dice(original, final, c)
        out[f"{name}_dice"] = 1.0 if agreement is None else round(agreement, 4)
        out[f"{name}_added_ml"] = round(float((b & ~a).sum()) * voxel_ml, 3)
        out[f"{name}_removed_ml"] = round(float((a & ~b).sum()) * voxel_ml, 3)
    return out


class LabelChange(ScoringMethod):
    """For every study with both an original (model) and a final (annotator) label: per-class Dice between the
    two, stored in the image's info under `label_change`."""

    def __init__(self) -> None:
        super().__init__("Per-class Dice between the model's label and the annotator's final label")

    def __call__(self, request, datastore: Datastore):
        original_tag = request.get("y_pred", DefaultLabelTag.ORIGINAL.value)
        final_tag = request.get("y", DefaultLabelTag.FINAL.value)
        result = {}
        for image_id in datastore.list_images():
            tags = datastore.get_labels_by_image_id(image_id)
            if original_tag not in tags or final_tag not in tags:
                continue
            a = nib.load(datastore.get_label_uri(image_id, original_tag))
            b = nib.load(datastore.get_label_uri(image_id, final_tag))
            if a.shape != b.shape:
                logger.warning(f"{image_id}: original and final labels differ in shape; not scored")
                continue
            voxel_ml = abs(float(np.linalg.det(b.affine[:3, :3]))) / 1000.0
            change = per_class_change(np.asanyarray(a.dataobj), np.asanyarray(b.dataobj), voxel_ml)
            datastore.update_image_info(image_id, {"label_change": change})
            result[image_id] = change
        return result
