"""`liver-tumor preannotate`: the model over many studies, each label in its study's geometry, resumable.

Per study the app's own InferTask runs (as `/infer` runs it), the label is written to `labels/<id>.nii.gz`, a
thumbnail to `thumbs/<id>.png` and a record to `records/<id>.json`, each renamed into place: a study with a
record marked ok is done and is skipped by the next run. A study that fails is recorded with its error and the
run goes on; the next run tries it again. Under torchrun each process takes every N-th study (its shard) on its
own GPU; rank 0 writes the report when all have finished.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from .. import distributed
from ..data.atomic import save_json
from . import choice
from .report import write_report
from .sources import Study, discover

logger = logging.getLogger(__name__)
MEASURES = ("liver_volume_ml", "tumour_count", "tumour_volume_ml", "largest_lesion_diameter_mm", "uncertainty")


@dataclass
class PreannotateConfig:
    studies: str
    out: Path
    device: str = "cpu"
    model: Path | None = None  # a liver_tumor checkpoint; default: the model the server pre-annotates with
    conf: dict[str, str] = field(default_factory=dict)
    model_name: str = "auto"  # liver_tumor, pyliverlesionseg, or auto: the server's choice (lib.preannotate.choice)


def model_name(cfg: PreannotateConfig) -> str:
    """The model to run: liver_tumor for a checkpoint given; for auto, the server's last choice, else the model
    trained on patients where its weights are there, else liver_tumor."""
    from ..settings import APP_DIR, Settings

    if cfg.model is not None or cfg.model_name != "auto":
        return choice.OWN if cfg.model is not None else cfg.model_name
    chosen = choice.read(APP_DIR / "model").get("chosen")
    if chosen:
        return chosen
    weights = Settings.from_conf(cfg.conf).pyliverlesionseg
    return choice.PATIENTS if weights is not None and weights.exists() else choice.OWN


def _infer_task(cfg: PreannotateConfig, work: Path):
    from ..configs.liver_tumor import LiverTumor
    from ..configs.pyliverlesionseg import PyLiverLesionSeg
    from ..settings import APP_DIR

    conf = dict(cfg.conf)
    model_dir = str(APP_DIR / "model")
    name = model_name(cfg)
    if name == choice.PATIENTS:
        config = PyLiverLesionSeg()
        config.init(name, model_dir, conf, None)
        task = config.infer()
        if task is None or not task.info()["model"]["available"]:
            raise RuntimeError("no pyliverlesionseg weights: run liver-tumor pyliverlesionseg-model first")
        return task, str(config.weights)
    if cfg.model is not None:
        if not cfg.model.is_file():
            raise FileNotFoundError(f"--model: no such file {cfg.model}")
        conf["pretrained_path"] = str(cfg.model)
        # an empty model folder, so that no published model takes precedence; in this run's work folder, which
        # the run removes, not in /tmp where one was left per run
        model_dir = str(work / "model")
        os.makedirs(model_dir, exist_ok=True)
    config = LiverTumor()
    config.init(choice.OWN, model_dir, conf, None)
    if config.current_model() is None:
        raise RuntimeError("no model: give --model FILE, or train or publish one first")
    return config.infer(), config.current_model()


def _done(out: Path, study: Study) -> bool:
    import json

    record = out / "records" / f"{study.id}.json"
    try:
        return json.loads(record.read_text()).get("status") == "ok" and (out / "labels" / f"{study.id}.nii.gz").exists()
    except (OSError, ValueError):
        return False


def _one(task, study: Study, cfg: PreannotateConfig, work: Path) -> dict[str, Any]:
    from ..viz.montage import montage

    start = time.time()
    image = study.nifti(work)
    label_file, result = task({"image": str(image), "device": cfg.device, "uncertainty": True,
                               "result_extension": ".nii.gz", "result_dtype": "uint8",
                               "logging": "WARNING"})  # MONAI Label logs every stage at INFO otherwise
    labels = cfg.out / "labels"
    labels.mkdir(parents=True, exist_ok=True)
    staged = labels / f".{study.id}.nii.gz.part"
    shutil.move(label_file, staged)
    os.replace(staged, labels / f"{study.id}.nii.gz")
    thumb = cfg.out / "thumbs" / f"{study.id}.png"
    thumb.parent.mkdir(parents=True, exist_ok=True)
    montage([(study.id, image, labels / f"{study.id}.nii.gz")], thumb)
    if study.kind != "nifti":
        image.unlink(missing_ok=True)  # the converted copy; the label keeps its geometry
    return {"id": study.id, "kind": study.kind, "source": study.source, "status": "ok",
            **{k: result.get(k) for k in MEASURES}, "seconds": round(time.time() - start, 2),
            "label": f"labels/{study.id}.nii.gz"}


def run(cfg: PreannotateConfig) -> dict[str, Any] | None:
    """Pre-annotate this process's shard; returns the report on rank 0 (None on the other ranks)."""
    launch = distributed.torchrun_launch()
    device = torch.device(cfg.device)
    if launch:
        device = distributed.start(launch, device)
        cfg.device = str(device)
    rank, world = (launch.rank, launch.world_size) if launch else (0, 1)
    studies, skipped_files = discover(cfg.studies)
    if not studies:
        raise ValueError(f"--studies: no NIfTI files or DICOM series in {cfg.studies}")
    cfg.out.mkdir(parents=True, exist_ok=True)
    work = cfg.out / "work" / f"rank{rank}"
    mine = studies[rank::world]
    todo = [s for s in mine if not _done(cfg.out, s)]
    task, model = _infer_task(cfg, work)
    failed = 0
    start = time.time()
    bar = tqdm(total=len(mine), initial=len(mine) - len(todo), unit="study", file=sys.stderr,
               desc=f"pre-annotating{f' (rank {rank}/{world})' if world > 1 else ''}", dynamic_ncols=True)
    for study in todo:
        try:
            record = _one(task, study, cfg, work)
        except KeyboardInterrupt:
            raise
        except Exception as e:  # one broken study must not stop the others: it is recorded with its error
            failed += 1
            message = str(e).splitlines()[0] if str(e) else type(e).__name__
            logger.warning(f"{study.id}: failed: {message}")
            record = {"id": study.id, "kind": study.kind, "source": study.source, "status": "failed",
                      "error": f"{type(e).__name__}: {message}"}
        record["model"] = model
        save_json(record, cfg.out / "records" / f"{study.id}.json")
        bar.update(1)
        bar.set_postfix(failed=failed)
    bar.close()
    shutil.rmtree(work, ignore_errors=True)
    with contextlib.suppress(OSError):  # the last rank to finish removes the folder the ranks' work shared
        work.parent.rmdir()
    seconds = time.time() - start
    save_json({"rank": rank, "world_size": world, "device": str(device), "studies": len(mine),
               "processed": len(todo), "failed": failed, "seconds": round(seconds, 2)},
              cfg.out / "ranks" / f"rank_{rank}.json")
    if launch:
        torch.distributed.barrier()
    report = write_report(cfg.out, studies, skipped_files, world) if rank == 0 else None
    if launch:
        torch.distributed.destroy_process_group()
    return report
