"""`liver-tumor bench bootstrap`: what the model trained on patients' labels of unlabelled studies give the app's
own model, when only a few studies have final labels.

A datastore of phantoms (seed 4100, used by nothing else): `final` studies with final labels (their ground
truth), `unlabelled` without. The app's model is fine-tuned from the demo checkpoint, as the server does, twice,
for the same number of optimisation steps: on the final labels alone, and with pyliverlesionseg's labels of the
unlabelled studies (the train option `pseudo_labels`, `pseudo_label_weight` 0.5). Both validate on the same final
label and publish their best. The starting model and both results are measured through the InferTask on held-out
phantoms (seed 2000) and LiTS case 117: Dice per class, the whole liver, lesions found by size, false positives.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from ..configs.liver_tumor import LiverTumor
from ..configs.pyliverlesionseg import PyLiverLesionSeg
from ..data.atomic import copy_file
from ..data.phantoms.batch import make_phantoms
from ..data.phantoms.study import known_tumours, study_id, study_paths
from ..data.sample_datastore import final_label_path
from ..datastore import CheckedLocalDatastore
from ..metrics.evaluate import evaluate, summarise
from ..settings import DEMO_CHECKPOINT
from ..trainers import pseudo_labels
from .inference import device_name
from .models import ModelsBenchConfig, cases


@dataclass(frozen=True)
class BootstrapConfig:
    final: int = 4
    unlabelled: int = 10
    preset: str = "medium"
    seed: int = 4100
    steps: int = 128  # optimisation steps of each run (one study's crops a step)
    weight: float = 0.5
    heldout_full: int = 3
    heldout_medium: int = 3
    lits: bool = True


def make_datastore(folder: Path, cfg: BootstrapConfig) -> CheckedLocalDatastore:
    make_phantoms(folder, cfg.final + cfg.unlabelled, cfg.seed, cfg.preset, progress=False)
    for i in range(cfg.final):
        sid = study_id(cfg.seed, i)
        if not final_label_path(folder, sid).exists():
            copy_file(study_paths(folder, sid)["label"], final_label_path(folder, sid))
    return CheckedLocalDatastore(str(folder))


def fine_tune(store: CheckedLocalDatastore, model_dir: Path, pseudo: bool, cfg: BootstrapConfig) -> tuple[str, dict]:
    """The demo model fine-tuned for cfg.steps steps; returns the published model and the run's stats."""
    n_train = cfg.final - 1  # one final label validates
    per_epoch = n_train * max(1, round(1 / cfg.weight)) + cfg.unlabelled if pseudo else n_train
    epochs = max(1, math.ceil(cfg.steps / per_epoch))
    config = LiverTumor()
    config.init("liver_tumor", str(model_dir), {"pretrained_path": str(DEMO_CHECKPOINT)}, None)
    task = config.trainer()
    task({"model": "liver_tumor", "max_epochs": epochs, "val_split": 1 / cfg.final, "seed": 0,
          "val_interval": max(1, epochs // 8), "pseudo_labels": pseudo, "pseudo_label_weight": cfg.weight,
          "multi_gpu": False}, store)
    published = config.current_model()
    return published, {"epochs": epochs, "steps": epochs * per_epoch, **{k: task.stats().get(k) for k in (
        "best_metric", "baseline_metric", "published_epoch", "total_time")}}


def measure(model: str, groups: dict, device: str) -> dict:
    with tempfile.TemporaryDirectory() as model_dir:
        config = LiverTumor()
        config.init("liver_tumor", model_dir, {"pretrained_path": model}, None)
        task = config.infer()
        return {group: summarise(evaluate(task, items, {"device": device}, known=known_tumours))
                for group, items in groups.items()}


def run(work: Path, cfg: BootstrapConfig, progress: Callable[[str], None] = print) -> dict:
    started = time.time()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    patients = PyLiverLesionSeg()
    patients.init("pyliverlesionseg", str(work / "patients-model"), {}, None)
    infer = patients.infer()
    if infer is None or not infer.info()["model"]["available"]:
        raise ValueError("no pyliverlesionseg weights: run liver-tumor pyliverlesionseg-model first")
    groups = cases(work / "heldout", ModelsBenchConfig(full=cfg.heldout_full, medium=cfg.heldout_medium,
                                                      real=cfg.lits))
    groups.pop("totalseg_ct", None)  # the question is about tumours: the phantoms and LiTS case 117
    result: dict = {"config": asdict(cfg), "runs": {}}
    for name, pseudo in (("final labels only", False), ("with pseudo-labels", True)):
        folder = work / name.replace(" ", "-")
        store = make_datastore(folder, cfg)
        if pseudo:
            t = time.time()
            made = pseudo_labels.ensure(store, infer, device)
            progress(f"pseudo-labels: {made} made in {time.time() - t:.0f} s")
            result["pseudo_labels"] = {"studies": len(pseudo_labels.datalist(store)), "seconds": round(
                time.time() - t, 1), "against_truth": summarise(evaluate(infer, [
                    (i, Path(store.get_image_uri(i)), study_paths(folder, i)["label"])
                    for i in store.get_unlabeled_images()], {"device": device}))}
        model, stats = fine_tune(store, folder / "model", pseudo, cfg)
        progress(f"{name}: {stats}")
        result["runs"][name] = {"training": stats, "model": model, "measured": measure(model, groups, device)}
        progress(f"{name}: {result['runs'][name]['measured']}")
    result["runs"]["starting model (demo)"] = {"measured": measure(str(DEMO_CHECKPOINT), groups, device)}
    return {**result, "device": device_name(device), "seconds": round(time.time() - started, 1)}


def table(result: dict) -> str:
    lines = ["| model | case | whole liver | liver | tumour | lesions found (<10, 10-20, >=20 mm) | false positives |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, run in result["runs"].items():
        for group, g in run["measured"].items():
            found = ", ".join(f"{v['found']}/{v['of']}" for v in g["lesions_found"].values())
            lines.append(f"| {name} | {group} | {g['whole_liver_dice']} | {g['liver_dice']} | {g['tumour_dice']} | "
                         f"{found} | {g['false_positives']} |")
    return "\n".join(lines)
