"""`liver-tumor bench models`: the app's models side by side, each through its InferTask as /infer runs it.

Accuracy on held-out phantoms (seed 2000: no model here was trained on it), LiTS case 117 and, where
../shared/data is beside the project, the TotalSegmentator example CT: Dice per class and of the whole liver,
true lesions found by size, false-positive lesions. Speed: the end-to-end latency on the 512 x 512 x 200
phantom of `bench infer`, the first request (networks loaded) and the median of the next ones.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..data.fixtures import real_ct_fixtures, write_fixture
from ..data.phantoms.batch import make_phantoms
from ..data.phantoms.study import known_tumours, study_id, study_paths
from ..metrics.evaluate import evaluate, summarise
from .inference import case_files, device_name

MODELS = ("liver_tumor", "pyliverlesionseg")


@dataclass(frozen=True)
class ModelsBenchConfig:
    models: tuple[str, ...] = MODELS
    seed: int = 2000  # held out: the demo model trained on seed 1000, the locator on 1100
    full: int = 6
    medium: int = 6
    real: bool = True
    speed_case: str | None = "full_512x512x200"
    speed_runs: int = 3
    device: str = "cuda" if torch.cuda.is_available() else "cpu"


def task_for(model: str, model_dir: Path, conf: dict[str, str]):
    """The model's InferTask, made by its TaskConfig as the app makes it."""
    from ..configs.liver_tumor import LiverTumor
    from ..configs.pyliverlesionseg import PyLiverLesionSeg

    configs = {"liver_tumor": LiverTumor, "pyliverlesionseg": PyLiverLesionSeg}
    if model not in configs:
        raise ValueError(f"unknown model {model!r}: choose from {', '.join(configs)}")
    config = configs[model]()
    config.init(model, str(model_dir), conf, None)
    task = config.infer()
    if task is None or not task.info()["model"]["available"]:
        raise ValueError(f"{model}: no weights ({task.info()['model']['status'] if task else 'disabled'})")
    return task


def cases(work: Path, cfg: ModelsBenchConfig) -> dict[str, list[tuple[str, Path, Path]]]:
    """Per group, (id, image, truth) of each case, made into `work` once."""
    folder = work / "phantoms"
    for count, preset, start in ((cfg.full, "full", 0), (cfg.medium, "medium", cfg.full)):
        if count:
            make_phantoms(folder, count, cfg.seed, preset, start=start, progress=False)
    out = {"held-out phantoms": [(sid, study_paths(folder, sid)["image"], study_paths(folder, sid)["label"])
                                 for sid in (study_id(cfg.seed, i) for i in range(cfg.full + cfg.medium))]}
    if cfg.real:
        for f in real_ct_fixtures():
            write_fixture(f, work / "real")
            out[f.id] = [(f.id, work / "real" / f"{f.id}.nii.gz", work / "real" / "truth" / f"{f.id}.nii.gz")]
    return out


def run(work: Path, cfg: ModelsBenchConfig, conf: dict[str, str] | None = None,
        progress: Callable[[str], None] = print) -> dict:
    started = time.time()
    groups = cases(work, cfg)
    speed_image = case_files(cfg.speed_case, work / "speed")[0] if cfg.speed_case else None
    result: dict = {"models": {}}
    for model in cfg.models:
        with tempfile.TemporaryDirectory() as model_dir:
            task = task_for(model, Path(model_dir), dict(conf or {}))
            entry: dict = {"card": task.info()["model"].get("card", {}).get("trained_on"), "groups": {}}
            for group, items in groups.items():
                rows = evaluate(task, items, {"device": cfg.device}, known=known_tumours)
                entry["groups"][group] = {**summarise(rows), "per_case": [
                    {k: r[k] for k in ("id", "liver_dice", "tumour_dice", "whole_liver_dice", "seconds", "lesions")}
                    for r in rows]}
                progress(f"{model} on {group}: {entry['groups'][group]['whole_liver_dice']} whole liver, "
                         f"{entry['groups'][group]['tumour_dice']} tumour ({time.time() - started:.0f} s)")
            if speed_image is not None:
                seconds = []
                for _ in range(cfg.speed_runs + 1):
                    began = time.perf_counter()
                    label_file, _ = task({"image": str(speed_image), "device": cfg.device})
                    seconds.append(time.perf_counter() - began)
                    Path(label_file).unlink(missing_ok=True)
                entry["speed"] = {"case": cfg.speed_case, "first_s": round(seconds[0], 2),
                                  "median_s": round(statistics.median(seconds[1:]), 2),
                                  "all_s": [round(s, 2) for s in seconds]}
                progress(f"{model} on {cfg.speed_case}: {entry['speed']}")
        result["models"][model] = entry
    return {**result, "device": device_name(cfg.device), "threads": torch.get_num_threads(),
            "config": {"seed": cfg.seed, "full": cfg.full, "medium": cfg.medium, "real": cfg.real},
            "seconds": round(time.time() - started, 1)}


def table(result: dict) -> str:
    models = list(result["models"])
    groups = list(next(iter(result["models"].values()))["groups"])
    lines = ["| case | model | whole liver | liver | tumour | lesions found (<10, 10-20, >=20 mm) | false positives "
             "| s per study |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for group in groups:
        for model in models:
            g = result["models"][model]["groups"][group]
            found = ", ".join(f"{v['found']}/{v['of']}" for v in g["lesions_found"].values())
            lines.append(f"| {group} | {model} | {g['whole_liver_dice']} | {g['liver_dice']} | {g['tumour_dice']} "
                         f"| {found} | {g['false_positives']} | {g['mean_seconds']} |")
    for model in models:
        speed = result["models"][model].get("speed")
        if speed:
            lines.append(f"| {speed['case']} | {model} | | | | | | {speed['median_s']} (first {speed['first_s']}) |")
    return "\n".join(lines)


def plot(result: dict, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(result["models"])
    groups = list(next(iter(result["models"].values()))["groups"])
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    width = 0.8 / len(models)
    for m, model in enumerate(models):
        g = result["models"][model]["groups"]
        x = np.arange(len(groups)) + m * width
        axes[0].bar(x, [g[k]["whole_liver_dice"] or 0 for k in groups], width, label=model)
        axes[1].bar(x, [g[k]["tumour_dice"] or 0 for k in groups], width, label=model)
        found = [sum(v["found"] for v in g[k]["lesions_found"].values()) /
                 max(1, sum(v["of"] for v in g[k]["lesions_found"].values())) for k in groups]
        axes[2].bar(x, found, width, label=model)
    for ax, title in zip(axes, ("whole-liver Dice", "tumour Dice", "true lesions found (share)")):
        ax.set_xticks(np.arange(len(groups)) + width * (len(models) - 1) / 2, groups, fontsize=8)
        ax.set(title=title, ylim=(0, 1))
        ax.legend(fontsize=8)
    fig.suptitle("The app's models side by side, each through its InferTask")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
