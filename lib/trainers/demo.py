"""The demo checkpoint: the liver_tumor UNet trained on synthetic phantoms only, by this recipe.

    liver-tumor demo-model --work WORKDIR

makes the training and held-out phantoms, trains from scratch with the app's own TrainTask (the same code the
server runs), measures Dice on the held-out phantoms with the app's own InferTask, and writes the weights as
float16 (about 10 MB) with a JSON card that says what they were trained on and how well they do.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from pathlib import Path

import torch

from ..bench.accuracy import evaluate, mean_dice
from ..configs.liver_tumor import LiverTumor
from ..configs.settings import DEMO_CHECKPOINT
from ..data.atomic import copy_file
from ..data.phantoms.batch import make_phantoms
from ..data.phantoms.study import study_id, study_paths
from ..data.sample_datastore import final_label_path
from ..datastore import CheckedLocalDatastore
from ..model.checkpoint import load_network, save_state_dict

logger = logging.getLogger(__name__)

RECIPE = {
    "train_seed": 1000, "train_full": 24, "train_medium": 16,
    "test_seed": 2000, "test_full": 6, "test_medium": 6,
    "epochs": 40, "val_split": 0.15, "seed": 0,
}


def _phantom_set(folder: Path, seed: int, full: int, medium: int, jobs: int) -> list[str]:
    """`full` studies of the full preset then `medium` ones (other indices, other patients)."""
    make_phantoms(folder, full, seed, "full", start=0, jobs=jobs)
    make_phantoms(folder, medium, seed, "medium", start=full, jobs=jobs)
    return [study_id(seed, i) for i in range(full + medium)]


def make_demo_model(work: Path, out: Path = DEMO_CHECKPOINT, epochs: int | None = None, jobs: int = 2) -> dict:
    r = dict(RECIPE, epochs=epochs or RECIPE["epochs"])
    started = time.time()
    store, test = work / "datastore", work / "heldout"
    for sid in _phantom_set(store, r["train_seed"], r["train_full"], r["train_medium"], jobs):
        if not final_label_path(store, sid).exists():
            copy_file(study_paths(store, sid)["label"], final_label_path(store, sid))
    test_ids = _phantom_set(test, r["test_seed"], r["test_full"], r["test_medium"], jobs)

    conf = {"pretrained_path": "none", "max_epochs": str(r["epochs"]), "val_split": str(r["val_split"])}
    config = LiverTumor()
    config.init("liver_tumor", str(work / "model"), conf, None)
    train_started = time.time()
    stats = config.trainer()({"model": "liver_tumor", "pretrained": False, "seed": r["seed"]},
                             CheckedLocalDatastore(str(store)))
    train_seconds = time.time() - train_started
    best = config.current_model()
    if best is None:
        raise RuntimeError("training published no model")

    conf_eval = {"pretrained_path": best}
    evaluator = LiverTumor()
    evaluator.init("liver_tumor", str(work / "eval-model"), conf_eval, None)
    rows = evaluate(evaluator.infer(), [(sid, study_paths(test, sid)["image"], study_paths(test, sid)["label"])
                                        for sid in test_ids], {"device": "cpu"})
    card = {
        "trained_on": "synthetic CT phantoms only (lib.data.phantoms); not validated on patients",
        "command": f"liver-tumor demo-model --work WORKDIR --epochs {r['epochs']}",
        "recipe": r,
        "spacing_mm": list(config.settings.spacing),
        "heldout": {"phantoms": f"seed {r['test_seed']}: {r['test_full']} full + {r['test_medium']} medium",
                    **mean_dice(rows), "cases": rows},
        "validation_best": stats.get("best_metric"),
        "train_seconds": round(train_seconds, 1),
        "total_seconds": round(time.time() - started, 1),
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
                   f"{'CUDA ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'CPU'}",
    }
    save_state_dict(load_network(Path(best)), out, half=True, meta=card)
    (work / "demo-card.json").write_text(json.dumps(card, indent=1))
    return card
