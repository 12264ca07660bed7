"""The CUDA paths: inference with AMP against the CPU, fp16 and bf16 training, one NCCL rank, and the study cache
with the random transforms on the GPU. `scripts/device-check` runs them on a GPU machine; elsewhere they skip,
saying so, except in its dry run (LIVER_TUMOR_TEST_DEVICE=cpu), which runs the same steps on the CPU."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from lib.configs.liver_tumor import LiverTumor
from lib.data.study_cache import StudyCache
from lib.metrics.dice import dice
from lib.model.checkpoint import load_network

from .conftest import ROOT, TINY

DEVICE = os.environ.get("LIVER_TUMOR_TEST_DEVICE", "cuda")
pytestmark = [pytest.mark.cuda, pytest.mark.skipif(
    DEVICE == "cuda" and not torch.cuda.is_available(),
    reason="no CUDA device here: scripts/device-check runs these on a GPU machine")]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cuda") / "store"
    shutil.copytree(ROOT / "sample-data", path)
    return path


def train(store: Path, model_dir: Path, *extra: str, torchrun: bool = False) -> dict:
    command = [sys.executable, *(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1"]
                                  if torchrun else []), "-m", "lib.cli.main", "train", "--datastore", str(store),
               "--model-dir", str(model_dir), "--epochs", "1", "--from-scratch", "--seed", "0", "--device", DEVICE,
               "--single-process", *TINY, *extra]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(
                              [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def test_infer_on_cuda_with_amp_agrees_with_the_cpu(store):
    config = LiverTumor()
    config.init("liver_tumor", str(store / "model"), {"pyliverlesionseg_path": "none"}, None)
    task = config.infer()
    image = str(store / "phantom_2026_004.nii.gz")
    labels = {}
    for device in dict.fromkeys(("cpu", DEVICE)):  # once in the dry run, where DEVICE is the CPU
        path, report = task({"image": image, "device": device})
        labels[device] = np.asanyarray(nib.load(path).dataobj)
    for cls in (1, 2):
        agreement = dice(labels["cpu"], labels[DEVICE], cls)
        assert agreement is None or agreement >= 0.99, (cls, agreement)
    assert (labels[DEVICE] == 1).sum() > 1000


@pytest.mark.parametrize("dtype, workers", [("float16", "2"), ("bfloat16", "0")])
def test_mixed_precision_training_steps_are_finite_and_publish(store, tmp_path, dtype, workers):
    """fp16 with its gradient scaler, its crops made by two loader processes forked from a process that holds CUDA
    (as the GPU check trains); bf16 with them made in the training process and moved to the GPU first."""
    report = train(store, tmp_path / "model", "--conf", "amp_dtype", dtype, "--conf", "tumour_weight", "3",
                   "--conf", "loader_workers", workers)
    assert [e["epoch"] for e in report["epochs"]] == [1]
    assert all(math.isfinite(e["loss"]) for e in report["epochs"]), report["epochs"]
    network = load_network(tmp_path / "model" / "liver_tumor.pt")
    assert all(torch.isfinite(p).all() for p in network.parameters())


def test_one_nccl_rank_trains_and_publishes(store, tmp_path):
    train(store, tmp_path / "model", torchrun=True)
    rank = json.loads((tmp_path / "model" / "liver_tumor" / "train_01" / "ranks" / "rank_0.json").read_text())
    assert rank["backend"] == ("nccl" if DEVICE == "cuda" else "gloo") and rank["world_size"] == 1
    assert rank["device"].startswith(DEVICE)
    assert rank["published_writes"] >= 1
    load_network(tmp_path / "model" / "liver_tumor.pt")


def test_the_study_cache_and_random_transforms_run_on_the_gpu(store, tmp_path):
    from monai.transforms import Compose

    config = LiverTumor()
    config.init("liver_tumor", str(tmp_path / "model"), {"pyliverlesionseg_path": "none", "spacing": "4",
                                                         "crop_size": "32"}, None)
    trainer = config.trainer()
    request = trainer.options({"synth_prob": 1.0, "crop_ratios": "1,1,2"})

    class Context:
        device = torch.device(DEVICE)

    Context.request = request
    data = [{"image": str(store / f"{sid}.nii.gz"), "label": str(store / "labels" / "final" / f"{sid}.nii.gz")}
            for sid in ("phantom_2026_000", "phantom_2026_001")]
    cache = StudyCache(data, Compose(trainer.deterministic_transforms(Context)),
                       Compose(trainer.random_transforms(Context)), trainer.cache_signature(), tmp_path / "cache",
                       memory_mb=64).warm()
    for index in range(len(data)):
        crops = cache[index]
        crops = crops if isinstance(crops, list) else [crops]
        assert crops and all(c["image"].device.type == DEVICE and c["label"].device.type == DEVICE for c in crops)
        assert all(tuple(c["image"].shape[1:]) == (32, 32, 32) for c in crops)
    assert cache.computed == 2 and len(list((tmp_path / "cache").glob("*.pt"))) == 2
