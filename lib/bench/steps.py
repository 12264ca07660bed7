"""`liver-tumor bench steps`: what one training step's data costs, transform by transform, on labelled studies.

The training task's own transforms with a train request's options (the run's crops, synthesis, fatty livers,
augmentations): each study pre-processed once, as the study cache does, then steps of the random transforms on it,
each transform timed, on one thread, as one of the loader's processes runs them. Beside them, what a deep copy of the
cached study would cost a step (the cache made one at every step until training set its `copy_study` off). It says
where a GPU's steps wait when the loader bounds them: the H200's 0.7 s steps (docs/device-check.md) were this work in
one process.
"""

from __future__ import annotations

import copy
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from monai.transforms import Compose
from monai.transforms.transform import apply_transform
from monai.utils import set_determinism


def measure(studies: list[tuple[str, Path, Path]], request: dict[str, Any], steps: int, seed: int = 0,
            progress: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """studies: (id, image, label) with labels 0/1/2. request: train options and the app's (spacing), as --conf
    gives them."""
    from ..configs.liver_tumor import LiverTumor
    from ..settings import crop_ratios

    if len(crop_ratios(str(request.get("crop_ratios", ""))) or ()) == 4:
        raise ValueError("bench steps times crops by class from three crop_ratios: a fourth (crops where a model "
                         "errs) needs that model's errors, found when a training run starts; give three numbers")
    torch.set_num_threads(1)  # a loader process's thread (PyTorch sets one in each worker)
    set_determinism(seed)
    with tempfile.TemporaryDirectory() as tmp:
        config = LiverTumor()
        config.init("liver_tumor", tmp, {**request, "pretrained_path": "none"}, None)
        task = config.trainer()
        options = task.options(dict(request))

        class Context:
            device = torch.device("cpu")
            request = options

        deterministic = Compose(task.deterministic_transforms(Context))
        random = task.random_transforms(Context)
    per_study, totals = [], defaultdict(list)
    for sid, image, label in studies:
        started = time.perf_counter()
        item = deterministic({"image": str(image), "label": str(label)})
        prepared_s = time.perf_counter() - started
        started = time.perf_counter()
        copy.deepcopy(item)
        copy_ms = 1000 * (time.perf_counter() - started)
        times: dict[str, list[float]] = defaultdict(list)
        for _ in range(steps):
            data: Any = copy.copy(item)
            step: dict[str, float] = defaultdict(float)
            for transform in random:
                started = time.perf_counter()
                data = apply_transform(transform, data)  # over the crops once there are several
                step[type(transform).__name__] += 1000 * (time.perf_counter() - started)
            for name, ms in step.items():
                times[name].append(ms)
            times["step"].append(sum(step.values()))
        for name, ms_list in times.items():
            totals[name] += ms_list
        per_study.append({"study": sid, "shape": list(item["image"].shape[1:]), "prepared_s": round(prepared_s, 2),
                          "deep_copy_ms": round(copy_ms, 1),
                          "step_ms": {k: round(float(np.mean(v)), 1) for k, v in times.items()}})
        progress(f"{sid}: {per_study[-1]['step_ms']['step']:.0f} ms a step (a deep copy {copy_ms:.0f} ms)")
    return {"steps": steps, "conf": dict(sorted(request.items())),
            "crops_per_step": options["crops_per_volume"], "studies": per_study,
            "mean_ms": {k: round(float(np.mean(v)), 1) for k, v in totals.items()},
            "max_ms": {k: round(float(np.max(v)), 1) for k, v in totals.items()},
            "deep_copy_ms": round(float(np.mean([s["deep_copy_ms"] for s in per_study])), 1)}


def plot(result: dict[str, Any], path: Path) -> None:
    """Mean milliseconds a step per transform, the deep copy beside them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [k for k in result["mean_ms"] if k != "step"]
    values = [result["mean_ms"][k] for k in names] + [result["deep_copy_ms"]]
    labels = names + ["(a deep copy of the study)"]
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(labels) + 1.2))
    ax.barh(labels, values, color=["tab:blue"] * len(names) + ["tab:grey"])
    ax.invert_yaxis()
    ax.set_xlabel(f"ms a step (mean of {result['steps']} steps x {len(result['studies'])} studies, one thread); "
                  f"a step {result['mean_ms']['step']:.0f} ms")
    ax.set_title(f"training step data, {result['crops_per_step']} crops a step", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
