"""Dice of the app's segmentations against ground truth, through the InferTask exactly as /infer runs it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Iterable

import nibabel as nib
import numpy as np

from ..model.network import LABELS


def dice(pred: np.ndarray, truth: np.ndarray, c: int) -> float | None:
    """Dice of class c; None when the class is absent from both (undefined, left out of means)."""
    a, b = pred == c, truth == c
    total = int(a.sum() + b.sum())
    return None if total == 0 else 2.0 * float((a & b).sum()) / total


def compare(label_path: Path, truth_path: Path) -> dict:
    """Per-class Dice of a label file against a ground-truth file; they must share the grid."""
    label, truth = nib.load(str(label_path)), nib.load(str(truth_path))
    same_grid = label.shape == truth.shape and np.allclose(label.affine, truth.affine, atol=1e-3)
    if not same_grid:
        raise ValueError(f"{label_path} does not overlay {truth_path}: {label.shape} vs {truth.shape}")
    a, b = np.asanyarray(label.dataobj), np.asanyarray(truth.dataobj)
    return {f"{name}_dice": dice(a, b, c) for name, c in LABELS.items()}


def evaluate(infer: Callable[[dict], tuple], cases: Iterable[tuple[str, Path, Path]], request: dict | None = None
             ) -> list[dict]:
    """Run infer({"image": path, ...}) on each (id, image, truth) and measure Dice and latency."""
    rows = []
    for case_id, image, truth in cases:
        start = time.perf_counter()
        label_file, result = infer({"image": str(image), **(request or {})})
        seconds = time.perf_counter() - start
        rows.append({"id": case_id, **compare(Path(label_file), truth), "seconds": round(seconds, 2),
                     "latencies": result.get("latencies", {})})
        Path(label_file).unlink(missing_ok=True)
    return rows


def mean_dice(rows: list[dict]) -> dict:
    out = {}
    for name in LABELS:
        values = [r[f"{name}_dice"] for r in rows if r.get(f"{name}_dice") is not None]
        out[f"{name}_dice"] = round(float(np.mean(values)), 4) if values else None
        out[f"{name}_cases"] = len(values)
    return out
