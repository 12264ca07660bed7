"""The locator checkpoint: a small UNet that finds the liver at 4 mm, the coarse stage of the inference cascade.

    liver-tumor locator-model --work WORKDIR

Trained with the compact loop of lib.trainers.in_memory on `small` phantoms. It is judged by what the cascade
needs of it: on held-out `full` phantoms, run exactly as /infer runs it (block means of the stored voxels, then
4 mm), the share of the true liver and tumour inside the box it gives, and how much of the volume that box is.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from ..cascade.locate import Locator
from ..data.phantoms.batch import make_phantoms
from ..data.phantoms.study import study_id, study_paths
from ..model.autocast import autocast_dtype
from ..model.checkpoint import save_state_dict
from ..settings import LOCATOR_CHECKPOINT
from ..trainers.in_memory import LoopConfig, evaluate, load_studies, train

logger = logging.getLogger(__name__)

# min_liver_ml: a smaller find is taken as no liver (the whole volume is segmented). With 20 mL, a fatty liver
# without contrast (16 HU) was "found" as a 54 mL patch and the box held a third of it; adult livers are 1 to 2 L.
# augment_prob: nnU-Net's augmentations (lib.transforms.augment). At 0.2 it found more of the real livers (the
# TotalSegmentator CT's: Dice 0.47 -> 0.76), but with its boxes the model lost two held-out lesions of 20 mm or
# more (docs/model-log.md): 0 as shipped
RECIPE = {"train_seed": 1100, "train_small": 96, "test_seed": 2100, "test_small": 8, "test_full": 10,
          "spacing_mm": 4.0, "channels": [8, 16, 32, 64], "steps": 3000, "crop": 48, "seed": 0,
          "margin_mm": 25.0, "min_liver_ml": 300.0, "augment_prob": 0.0}


def coverage(locator: Locator, image: Path, truth: Path) -> dict:
    """The box the locator gives for a study, and the share of the true foreground inside it."""
    img = nib.load(str(image))
    volume, label = np.asanyarray(img.dataobj), np.asanyarray(nib.load(str(truth)).dataobj) > 0
    region = locator.locate(volume, img.affine)
    inside = int(label[region.slices].sum())
    return {"id": image.name.split(".")[0], "cascade": region.cascade, "reason": region.reason,
            "foreground_inside": round(inside / max(1, int(label.sum())), 5),
            "box_fraction_of_volume": round(region.fraction(volume.shape), 4), "seconds": round(region.seconds, 2)}


def make_locator_model(work: Path, out: Path = LOCATOR_CHECKPOINT, jobs: int = 2) -> dict:
    r = RECIPE
    started = time.time()
    cfg = LoopConfig(spacing=r["spacing_mm"], steps=r["steps"], crop=r["crop"], channels=tuple(r["channels"]),
                     augment_prob=r["augment_prob"])
    studies = load_studies(work / "train", r["train_seed"], r["train_small"], "small", r["spacing_mm"])
    test_small = load_studies(work / "heldout-small", r["test_seed"], r["test_small"], "small", r["spacing_mm"])
    net = train(studies, cfg, r["seed"])
    train_seconds = time.time() - started
    dice = evaluate(net, test_small, cfg)

    full = work / "heldout-full"
    make_phantoms(full, r["test_full"], r["test_seed"] + 1, "full", jobs=jobs)
    locator = Locator(net.cpu(), r["spacing_mm"], r["margin_mm"], r["min_liver_ml"], "cpu",
                      autocast_dtype("cpu", False, cpu_bf16=True))
    cases = []
    for i in range(r["test_full"]):
        paths = study_paths(full, study_id(r["test_seed"] + 1, i))
        cases.append(coverage(locator, paths["image"], paths["label"]))
        logger.info("locator on %s: %s", paths["image"].name, cases[-1])
    card = {
        "model": "liver locator (coarse stage of the inference cascade)",
        "trained_on": "synthetic CT phantoms only (lib.data.phantoms); not validated on patients",
        "command": "liver-tumor locator-model --work WORKDIR",
        "recipe": r, "channels": r["channels"], "spacing_mm": r["spacing_mm"], "min_liver_ml": r["min_liver_ml"],
        "heldout_small_dice": {"liver": round(dice["liver"], 4), "tumour": round(dice["tumour"], 4)},
        "heldout_full": {"phantoms": f"seed {r['test_seed'] + 1}: {r['test_full']} full",
                         "min_foreground_inside": min(c["foreground_inside"] for c in cases),
                         "mean_box_fraction": round(float(np.mean([c["box_fraction_of_volume"] for c in cases])), 4),
                         "cases": cases},
        "train_seconds": round(train_seconds, 1), "total_seconds": round(time.time() - started, 1),
        "machine": f"{torch.get_num_threads()} threads, "
                   f"{'CUDA ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'CPU'}",
    }
    save_state_dict(net, out, half=False, meta=card)
    return card
