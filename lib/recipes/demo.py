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

from ..configs.liver_tumor import LiverTumor
from ..data.atomic import copy_file
from ..data.fixtures import real_ct_fixtures, write_fixture
from ..data.phantoms.batch import make_phantoms
from ..data.phantoms.study import known_tumours, study_id, study_paths
from ..data.sample_datastore import final_label_path
from ..datastore import CheckedLocalDatastore
from ..metrics.evaluate import evaluate, summarise
from ..model.checkpoint import load_network, read_card, save_state_dict
from ..settings import DEMO_CHECKPOINT

logger = logging.getLogger(__name__)

RECIPE = {
    "train_seed": 1000, "train_full": 24, "train_medium": 16,
    "test_seed": 2000, "test_full": 6, "test_medium": 6,
    "val_split": 0.15, "val_interval": 2, "loss": "dicece", "seed": 0, "spacing": 1.0,
    "stages": [
        # the liver, from scratch, with the seed's crops (foreground or background 1:1)
        {"epochs": 40, "crop_ratios": ""},
        # tumours: crops centred in the liver and on tumours twice as often as on background, half of them with
        # synthetic lesions of 8 to 40 mm painted in (lib.transforms.synthesis), tumour weighing 3 in the
        # cross-entropy, Dice over the batch, a lower rate for fine-tuning, validation every 3 epochs. (Crops
        # centred on tumour alone, without synthesis, lost liver Dice and found none. These settings with per-crop
        # Dice, background crops centred anywhere and lesions from 5 mm found 65% of lesions by epoch 10 with
        # thousands of false-positive specks; crops 2,2,1, synthesis in a third, tumour weighing 2 at 1e-4 found
        # none in 9 epochs.)
        {"epochs": 18, "crop_ratios": "1,2,2", "synth_prob": 0.5, "synth_lesions": [1, 3], "synth_size_mm": [8, 40],
         "tumour_weight": 3.0, "learning_rate": 2e-4, "val_interval": 3},
        # the liver back: the tumour stage cost whole-liver Dice (an arterial liver called tumour) and never learnt
        # the non-contrast fatty livers (a training set of 40 holds two livers under 30 HU): crops centred on tissue
        # and liver more than on tumour, the liver made fatty in a third of them (lib.transforms.liver_attenuation,
        # before the synthesis paints lesions relative to it), a lower rate. (The liver moved to any CT number from
        # 0 to 125 HU instead found the fatty livers, held-out whole-liver Dice 0.92, best at epoch 3 of 18, but
        # called bowel liver on the real TotalSegmentator CT: 0.60.)
        {"epochs": 9, "crop_ratios": "2,2,1", "synth_prob": 0.5, "synth_lesions": [1, 3], "synth_size_mm": [8, 40],
         "tumour_weight": 2.0, "learning_rate": 1e-4, "fatty_liver_prob": 0.3, "val_interval": 3},
    ],
}
STAGE_OPTIONS = ("val_interval", "crop_ratios", "synth_prob", "synth_lesions", "synth_size_mm", "tumour_weight",
                 "learning_rate", "fatty_liver_prob", "fatty_liver_hu", "noise_prob", "noise_hu",
                 "augment_prob", "fatty_liver_floor_hu", "bright_liver_prob", "bright_liver_hu")


def _phantom_set(folder: Path, seed: int, full: int, medium: int, jobs: int) -> list[str]:
    """`full` studies of the full preset then `medium` ones (other indices, other patients)."""
    for count, preset, start in ((full, "full", 0), (medium, "medium", full)):
        if count:
            make_phantoms(folder, count, seed, preset, start=start, jobs=jobs)
    return [study_id(seed, i) for i in range(full + medium)]


def training_datastore(store: Path, seed: int, full: int, medium: int, jobs: int) -> list[str]:
    """The training phantoms as a datastore whose final labels are their ground truth."""
    ids = _phantom_set(store, seed, full, medium, jobs)
    for sid in ids:
        if not final_label_path(store, sid).exists():
            copy_file(study_paths(store, sid)["label"], final_label_path(store, sid))
    return ids


def make_demo_model(work: Path, out: Path = DEMO_CHECKPOINT, epochs: int | None = None, jobs: int = 2,
                    spacing: float | None = None, data: Path | None = None, start: Path | None = None) -> dict:
    """epochs: scales every stage (None: the recipe's). data: a work folder of an earlier run whose phantoms to
    reuse (they are the same for the same recipe). Stages already done in `work` are not run again. start: a
    checkpoint this recipe made (its card lists the stages it went through): the stages after those go on from it."""
    r = dict(RECIPE, spacing=spacing or RECIPE["spacing"])
    if epochs:
        total = sum(st["epochs"] for st in RECIPE["stages"])
        r["stages"] = [dict(st, epochs=max(1, round(st["epochs"] * epochs / total))) for st in RECIPE["stages"]]
    started = time.time()
    store, test = (data or work) / "datastore", (data or work) / "heldout"
    training_datastore(store, r["train_seed"], r["train_full"], r["train_medium"], jobs)
    test_ids = _phantom_set(test, r["test_seed"], r["test_full"], r["test_medium"], jobs)

    conf = {"pretrained_path": str(start) if start else "none", "val_split": str(r["val_split"]),
            "spacing": str(r["spacing"])}
    config = LiverTumor()
    config.init("liver_tumor", str(work / "model"), conf, None)
    done_path = work / "stages.json"
    done = json.loads(done_path.read_text()) if done_path.exists() else []
    if start and not done:  # the stages the checkpoint went through, with their time, count as done
        done = [{**s, "from": start.name} for s in read_card(start).get("stages", [])]
        if not done:
            raise ValueError(f"{start} has no card listing the stages it went through")
    for i, stage in enumerate(r["stages"]):
        if i < len(done):
            continue
        started_stage = time.time()
        request = {"model": "liver_tumor", "pretrained": i > 0, "seed": r["seed"] + i, "loss": r["loss"],
                   "val_interval": r["val_interval"], "max_epochs": stage["epochs"],
                   **{k: v for k, v in stage.items() if k in STAGE_OPTIONS}}
        task = config.trainer()
        task(request, CheckedLocalDatastore(str(store)))
        stats = task.stats()
        done.append({**stage, "seconds": round(time.time() - started_stage, 1), "best_metric": stats.get("best_metric"),
                     "published_epoch": stats.get("published_epoch")})
        done_path.write_text(json.dumps(done, indent=1))
    train_seconds = sum(d["seconds"] for d in done)
    best = config.current_model()
    if best is None:
        raise RuntimeError("training published no model")

    # measured as it ships: float16 weights moved the TotalSegmentator liver Dice of one model by 0.035
    # (docs/model-log.md)
    half = work / "model-float16.pt"
    save_state_dict(load_network(Path(best)), half, half=True)
    conf_eval = {"pretrained_path": str(half), "spacing": str(r["spacing"])}
    evaluator = LiverTumor()
    evaluator.init("liver_tumor", str(work / "eval-model"), conf_eval, None)
    task = evaluator.infer()
    rows = evaluate(task, [(sid, study_paths(test, sid)["image"], study_paths(test, sid)["label"])
                           for sid in test_ids], {"device": "cpu"}, known=known_tumours)
    real = {}
    for fixture in real_ct_fixtures():  # measured only: never trained or tuned on
        write_fixture(fixture, work / "real")
        case = [(fixture.id, work / "real" / f"{fixture.id}.nii.gz", work / "real" / "truth" / f"{fixture.id}.nii.gz")]
        real[fixture.id] = summarise(evaluate(task, case, {"device": "cpu"}))
    card = {
        "trained_on": "synthetic CT phantoms only (lib.data.phantoms); not validated on patients",
        "command": f"liver-tumor demo-model --work WORKDIR --spacing {r['spacing']}",
        "recipe": r,
        "spacing_mm": list(config.settings.spacing),
        "heldout": {"phantoms": f"seed {r['test_seed']}: {r['test_full']} full + {r['test_medium']} medium",
                    **summarise(rows), "cases": rows},
        "real_ct": real,
        "stages": done,
        "train_seconds": round(train_seconds, 1),
        "train_cpu_hours": round(train_seconds / 3600, 2),
        "total_seconds": round(time.time() - started, 1),
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
                   f"{'CUDA ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'CPU'}",
    }
    save_state_dict(load_network(half), out, half=True, meta=card)
    (work / "demo-card.json").write_text(json.dumps(card, indent=1))
    return card
