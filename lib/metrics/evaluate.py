"""Dice and lesion detection of the app's segmentations against ground truth, through an InferTask exactly as
/infer runs it."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Callable, Iterable

import nibabel as nib
import numpy as np

from .dice import check_same_grid, mean_dice, scores
from .lesions import SIZE_BANDS_MM, band, lesion_detection
from .liver_volume import liver_volume_errors

BANDS = (band(0.0), band(SIZE_BANDS_MM[0]), band(SIZE_BANDS_MM[1]))
VOLUME_KEYS = ("liver_added_ml", "liver_added_far_ml", "liver_added_below_ml", "liver_missed_ml")


def evaluate(infer: Callable[[dict], tuple], cases: Iterable[tuple[str, Path, Path]], request: dict | None = None,
             known: Callable[[Path], list[dict] | None] | None = None, keep: Path | None = None) -> list[dict]:
    """Run infer({"image": path, ...}) on each (id, image, truth) and measure Dice per class, the whole liver's
    Dice and the millilitres it adds and misses, lesion detection and latency; the noise the app measured (and the
    smoothing) and, where a second pass's rule is on (the dark liver's by default), its decision (the first pass's
    liver median, the shift) are kept beside them. known(image): what is known of its true lesions
    (lesion_detection). keep: a folder to keep the labels in (<id>.nii.gz), else they are removed."""
    rows = []
    for case_id, image, truth in cases:
        start = time.perf_counter()
        label_file, result = infer({"image": str(image), **(request or {})})
        seconds = time.perf_counter() - start
        label, truth_image = nib.load(label_file), nib.load(str(truth))
        check_same_grid(label, truth_image, label_file, truth)
        label_array, truth_array = np.asanyarray(label.dataobj), np.asanyarray(truth_image.dataobj)
        lesions = lesion_detection(label_array, truth_array, label.affine,
                                   known(Path(image)) if known else None, _ct_numbers(Path(image), truth_array.shape))
        rows.append({"id": case_id, **scores(label_array, truth_array), "seconds": round(seconds, 2),
                     **liver_volume_errors(label_array, truth_array, label.affine), "lesions": lesions,
                     "latencies": result.get("latencies", {}),
                     **{k: result[k] for k in ("noise_hu", "smoothed_sigma_mm", "second_pass") if k in result}})
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            shutil.move(label_file, keep / f"{case_id}.nii.gz")
        else:
            Path(label_file).unlink(missing_ok=True)
    return rows


def _ct_numbers(image: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """The study's CT numbers where it is a NIfTI file on its truth's grid (the lesions' contrast is measured on
    them), else None."""
    if not image.name.endswith((".nii", ".nii.gz")):
        return None
    volume = nib.load(str(image))
    return np.asarray(volume.dataobj, np.float32) if volume.shape == tuple(shape) else None


def summarise(rows: list[dict]) -> dict:
    """Over the cases: mean Dice per class and of the whole liver, the mean mL of liver added (far, below) and
    missed a study, the tumour's global Dice, the true lesions found and matched (of how many) per size band,
    false positives in all and per study, the mean latency."""
    found = {b: [sum(r["lesions"]["found_by_size"][b][k] for r in rows) for k in ("found", "of", "matched")]
             for b in BANDS}
    overlap = sum(r["lesions"]["tumour_overlap_voxels"] for r in rows)
    total = sum(r["lesions"]["tumour_voxels"] for r in rows)
    false = sum(r["lesions"]["false_positives"] for r in rows)
    kinds: dict[str, list[int]] = {}
    for r in rows:
        for kind, v in r["lesions"].get("found_by_kind", {}).items():
            kinds.setdefault(kind, [0, 0])
            kinds[kind][0] += v["found"]
            kinds[kind][1] += v["of"]
    measured = [r["lesions"]["found_visible_10mm"] for r in rows if "found_visible_10mm" in r["lesions"]]
    visible = [sum(v[k] for v in measured) for k in ("found", "of", "matched")]
    by_kind = {"lesions_found_by_kind": {k: {"found": f, "of": n} for k, (f, n) in sorted(kinds.items())}} \
        if kinds else {}
    by_contrast = {"sensitivity_visible_10mm": round(visible[0] / visible[1], 3) if visible[1] else None,
                   "visible_10mm": {"found": visible[0], "of": visible[1], "matched": visible[2]}} if measured else {}
    volumes = {k: round(float(np.mean(v)), 1) for k in VOLUME_KEYS if (v := [r[k] for r in rows if k in r])}
    return {**mean_dice(rows), **volumes,
            "tumour_global_dice": round(2 * overlap / total, 4) if total else None, **by_kind, **by_contrast,
            "lesions_found": {b: {"found": f, "of": n, "matched": m} for b, (f, n, m) in found.items()},
            "false_positives": false, "false_positives_per_study": round(false / max(1, len(rows)), 2),
            "mean_seconds": round(float(np.mean([r["seconds"] for r in rows])), 2), "cases": len(rows)}
