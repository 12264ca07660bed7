"""Dice per class, of arrays and of label files, and its mean over cases."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from ..model.network import LABELS


def dice(pred: np.ndarray, truth: np.ndarray, c: int) -> float | None:
    """Dice of class c; None when the class is absent from both (undefined, left out of means)."""
    a, b = pred == c, truth == c
    total = int(a.sum() + b.sum())
    return None if total == 0 else 2.0 * float((a & b).sum()) / total


def dice_per_class(pred: np.ndarray, truth: np.ndarray) -> dict[str, float | None]:
    """{"liver": ..., "tumour": ...}, rounded to 4 places (None where a class is in neither)."""
    return {name: (None if (v := dice(pred, truth, c)) is None else round(v, 4)) for name, c in LABELS.items()}


def compare(label_path: Path, truth_path: Path) -> dict:
    """Per-class Dice of a label file against a ground-truth file, and of the liver with its tumours; they must
    share the grid."""
    label, truth = nib.load(str(label_path)), nib.load(str(truth_path))
    check_same_grid(label, truth, label_path, truth_path)
    return scores(np.asanyarray(label.dataobj), np.asanyarray(truth.dataobj))


def check_same_grid(label: nib.Nifti1Image, truth: nib.Nifti1Image, label_name: object, truth_name: object) -> None:
    """ValueError unless the label lies on the truth's grid (shape and affine)."""
    if not (label.shape == truth.shape and np.allclose(label.affine, truth.affine, atol=1e-3)):
        raise ValueError(f"{label_name} does not overlay {truth_name}: {label.shape} vs {truth.shape}")


def scores(pred: np.ndarray, truth: np.ndarray) -> dict:
    """`<class>_dice` per class and `whole_liver_dice` of two arrays on one grid."""
    return {**{f"{name}_dice": dice(pred, truth, c) for name, c in LABELS.items()},
            "whole_liver_dice": whole_liver_dice(pred, truth)}


def whole_liver_dice(pred: np.ndarray, truth: np.ndarray) -> float | None:
    """Dice of the liver with its tumours (LiTS' "liver" score); None when neither has any."""
    return dice((np.asarray(pred) > 0).astype(np.uint8), (np.asarray(truth) > 0).astype(np.uint8), 1)


def mean_dice(rows: list[dict]) -> dict:
    """The mean of each class's `<name>_dice` (and the whole liver's) over the rows where it is defined, and how
    many those are."""
    out = {}
    for name in (*LABELS, "whole_liver"):
        values = [r[f"{name}_dice"] for r in rows if r.get(f"{name}_dice") is not None]
        out[f"{name}_dice"] = round(float(np.mean(values)), 4) if values else None
        out[f"{name}_cases"] = len(values)
    return out
