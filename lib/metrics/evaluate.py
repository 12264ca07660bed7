"""Dice and lesion detection of the app's segmentations against ground truth, through an InferTask exactly as
/infer runs it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Iterable

import nibabel as nib
import numpy as np

from .dice import compare
from .lesions import lesion_detection


def evaluate(infer: Callable[[dict], tuple], cases: Iterable[tuple[str, Path, Path]], request: dict | None = None
             ) -> list[dict]:
    """Run infer({"image": path, ...}) on each (id, image, truth) and measure Dice per class, the whole liver's
    Dice, lesion detection and latency."""
    rows = []
    for case_id, image, truth in cases:
        start = time.perf_counter()
        label_file, result = infer({"image": str(image), **(request or {})})
        seconds = time.perf_counter() - start
        label = nib.load(label_file)
        lesions = lesion_detection(np.asanyarray(label.dataobj), np.asanyarray(nib.load(str(truth)).dataobj),
                                   label.affine)
        rows.append({"id": case_id, **compare(Path(label_file), truth), "seconds": round(seconds, 2),
                     "lesions": lesions, "latencies": result.get("latencies", {})})
        Path(label_file).unlink(missing_ok=True)
    return rows
