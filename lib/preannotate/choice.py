"""Which model pre-annotates: the one that scores better on the datastore's own final labels.

With fewer final labels than `preannotation_min_labels`, the model trained on patients (pyliverlesionseg) does: the
app's own model has not seen this scanner's studies yet. From then on, after each training run the app's model and
that model segment the same validation studies (the run's, with their final labels), and the better mean Dice
(liver and tumour) is chosen; until a run has compared them, the model trained on patients stays. The choice, why,
and both scores are kept in the app's model folder (`preannotation.json`), shown in /info, and put first in its
list of models (3D Slicer's and OHIF's first choice), and `liver-tumor preannotate` uses it by default.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from ..data.atomic import save_json
from ..data.study_cache import entry_key
from ..metrics.evaluate import evaluate

CHOICE_FILE = "preannotation.json"
PATIENTS = "pyliverlesionseg"  # trained on patients' CT
OWN = "liver_tumor"  # the app's own, trained here


def score(rows: list[dict]) -> float | None:
    """Mean over the studies of each one's mean Dice of liver and tumour (tumour left out where neither label
    has any)."""
    per_study = [np.mean([r[k] for k in ("liver_dice", "tumour_dice") if r.get(k) is not None]) for r in rows
                 if r.get("liver_dice") is not None]
    return round(float(np.mean(per_study)), 4) if per_study else None


def compare(tasks: dict[str, Callable[[dict], tuple]], studies: Iterable[tuple[str, Path, Path]],
            versions: dict[str, str | None], model_dir: Path, device: str = "cpu") -> dict[str, Any]:
    """Each model on the same studies (id, image, final label): its score and per-study Dice, recorded. A study
    the last comparison measured with the same model file, image and label is not segmented again: the model
    trained on patients never changes, and its pipeline takes about 40 s a study on a CPU, at every training run."""
    studies = list(studies)
    last = read(model_dir)
    before = last.get("fingerprints", {})
    # the study cache's key: each file's path, size and modification time
    paths = {name: versions.get(name) for name in tasks}
    models = {name: entry_key({"model": p}, "") if p and os.path.isfile(p) else None for name, p in paths.items()}
    inputs = {sid: entry_key({"image": str(image), "label": str(label)}, "") for sid, image, label in studies}
    scores, cases, reused = {}, {}, {}
    for name, task in tasks.items():
        same_model = models[name] is not None and before.get("models", {}).get(name) == models[name]
        known = {r["id"]: r for r in last.get("cases", {}).get(name, [])
                 if same_model and before.get("studies", {}).get(r["id"]) == inputs.get(r["id"])}
        todo = [s for s in studies if s[0] not in known]
        rows = {r["id"]: {k: r.get(k) for k in ("id", "liver_dice", "tumour_dice", "seconds")}
                for r in evaluate(task, todo, {"device": device, "logging": "WARNING"})}
        cases[name] = [known.get(sid) or rows[sid] for sid, _, _ in studies]
        scores[name] = score(cases[name])
        reused[name] = [sid for sid, _, _ in studies if sid in known]
    record = {"scores": scores, "studies": [s[0] for s in studies], "versions": versions, "cases": cases,
              "reused": reused, "fingerprints": {"models": models, "studies": inputs},
              "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    save_json(record, Path(model_dir) / CHOICE_FILE)
    return record


def read(model_dir: Path) -> dict[str, Any]:
    import json

    try:
        return json.loads((Path(model_dir) / CHOICE_FILE).read_text())
    except (OSError, ValueError):
        return {}


def choose(available: list[str], final_labels: int, min_labels: int, comparison: dict[str, Any]
           ) -> dict[str, Any]:
    """{"model", "why", "scores"}: the model that pre-annotates, given the models that can run now."""
    scores = comparison.get("scores", {})
    if PATIENTS not in available:
        return {"model": available[0] if available else None, "scores": scores,
                "why": "the model trained on patients is not available (liver-tumor pyliverlesionseg-model)"}
    if OWN not in available:
        return {"model": PATIENTS, "scores": scores, "why": f"{OWN} has no model yet"}
    if final_labels < min_labels:
        return {"model": PATIENTS, "scores": scores,
                "why": f"{final_labels} final label(s), fewer than {min_labels} (--conf preannotation_min_labels): "
                       "the model trained on patients"}
    own, patients = scores.get(OWN), scores.get(PATIENTS)
    if own is None or patients is None:
        return {"model": PATIENTS, "scores": scores,
                "why": "no training run has compared the two on this datastore's final labels yet"}
    winner = OWN if own > patients else PATIENTS
    return {"model": winner, "scores": scores,
            "why": f"it scores better on the final labels of the last training run's validation studies "
                   f"({', '.join(comparison.get('studies', []))}): mean Dice {OWN} {own}, {PATIENTS} {patients}"}
