"""Training at scale, with real processes: two gloo ranks under torchrun, a run killed with SIGKILL and resumed, a
fake Decathlon folder, the study cache, and the retrain trigger on a running server.

Every run here is tiny (4 mm working spacing, 32^3 crops, one or two epochs): these tests check behaviour, the
benchmark (`liver-tumor bench train`) measures speed and Dice.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
import torch
from monai.transforms import Compose, LoadImaged

from lib.data.study_cache import StudyCache, prune
from lib.model.checkpoint import load_network, read_card
from lib.trainers.retrain import RetrainTrigger

from .conftest import ROOT, TINY, cli_error, decathlon_standin, run_cli, served


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """sample-data with a fifth final label: 4 studies train (2 per rank), 1 validates."""
    path = tmp_path_factory.mktemp("train") / "store"
    shutil.copytree(ROOT / "sample-data", path)
    shutil.copy(path / "truth" / "phantom_2026_004.nii.gz", path / "labels" / "final" / "phantom_2026_004.nii.gz")
    return path


def train_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "lib.cli.main", "train", *map(str, args)]


def test_two_gloo_ranks_train_in_step_on_their_own_shards(store, tmp_path):
    model = tmp_path / "model"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "lib.cli.main", "train", "--datastore", str(store), "--model-dir", str(model),
                           "--epochs", "2", "--from-scratch", "--seed", "0", "--device", "cpu", *TINY],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    reports = [json.loads((model / "liver_tumor" / "train_01" / "ranks" / f"rank_{r}.json").read_text())
               for r in (0, 1)]
    assert [r["world_size"] for r in reports] == [2, 2] and reports[0]["pid"] != reports[1]["pid"]
    # the weights stayed identical: DistributedDataParallel averaged the gradients of both ranks at every step
    assert reports[0]["parameters_sha256"] == reports[1]["parameters_sha256"]
    assert reports[0]["steps"] == reports[1]["steps"] == 4  # 2 epochs x 2 studies per rank
    shards = [set(r["train_studies"]) for r in reports]
    assert len(shards[0]) == len(shards[1]) == 2 and not shards[0] & shards[1]
    assert reports[0]["val_studies"] == reports[1]["val_studies"]  # one validation study: both ranks validate it
    # rank 0 alone published; the model loads and its card says which epoch
    assert [r["published_writes"] for r in reports] == [reports[0]["published_writes"], 0]
    assert reports[0]["published_writes"] >= 1
    assert list(model.glob("*.pt")) == [model / "liver_tumor.pt"]
    load_network(model / "liver_tumor.pt")
    report = json.loads(proc.stdout)
    assert read_card(model / "liver_tumor.pt")["epoch"] == report["published_epoch"]
    assert [e["epoch"] for e in report["epochs"]] == [1, 2]
    assert all(0 <= e["val_liver_dice"] <= 1 for e in report["epochs"])
    assert Path(report["curves"]).stat().st_size > 10_000


def test_a_killed_run_leaves_a_loadable_model_and_resumes(store, tmp_path):
    model = tmp_path / "model"
    run_dir = model / "liver_tumor" / "train_01"
    cosine = ["--conf", "lr_schedule", "cosine", "--conf", "learning_rate", "0.001"]
    proc = subprocess.Popen(train_cmd("--datastore", store, "--model-dir", model, "--epochs", "500",
                                      "--from-scratch", "--seed", "0", *cosine, *TINY),
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 300
    while not ((run_dir / "resume.pt").exists() and (model / "liver_tumor.pt").exists()):
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.time() < deadline, "no epoch finished in 5 minutes"
        time.sleep(0.2)
    time.sleep(1.5)  # into a later epoch, probably mid-step or mid-write
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL

    load_network(model / "liver_tumor.pt")  # the published model is whole
    stats = json.loads((model / "liver_tumor" / "train_stats.json").read_text())
    done = torch.load(run_dir / "resume.pt", weights_only=False)["epoch"]
    assert done >= 1 and stats["history"][-1]["epoch"] in (done, done + 1)

    resumed = run_cli("train", "--datastore", store, "--model-dir", model, "--epochs", done + 2, "--resume",
                      *cosine, *TINY)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    history = json.loads(resumed.stdout)["epochs"]
    epochs = [e["epoch"] for e in history]
    assert epochs[-2:] == [done + 1, done + 2] and epochs == list(range(1, done + 3))
    # the cosine goes on from the epoch the run stopped at, over the epochs now asked for (done + 2): a restarted
    # schedule would give its first epoch 0.001; the last epoch learns at a hundredth of the start
    expected = 0.001 * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * done / (done + 1))))
    assert history[-2]["learning_rate"] == pytest.approx(expected) and expected < 0.001 * 0.6
    assert history[-1]["learning_rate"] == pytest.approx(0.001 * 0.01)
    assert history[0]["learning_rate"] == pytest.approx(0.001)  # epoch 1 of the killed run: the top of its curve
    load_network(model / "liver_tumor.pt")


def test_resume_without_a_run_and_bad_options_are_clear_errors(store, tmp_path):
    err = cli_error("train", "--datastore", store, "--model-dir", tmp_path, "--resume", *TINY)
    assert "no run to resume" in err
    assert "--datastore, --decathlon" in cli_error("train", "--model-dir", tmp_path)
    assert "--device" in cli_error("train", "--datastore", store, "--device", "tpu")
    err = cli_error("train", "--datastore", store, "--model-dir", tmp_path, *TINY,
                    "--conf", "amp_dtype", "fp8")
    assert "amp_dtype" in err


def test_one_epoch_on_a_fake_decathlon_folder_reports_test_dice(tmp_path):
    # liver_0..15 of the seed's split: 10 train, 5 validation, 1 test (liver_15)
    task = decathlon_standin(tmp_path / "msd", count=16, distinct=2, seed=3)
    model = tmp_path / "model"
    proc = run_cli("train", "--decathlon", task, "--model-dir", model, "--epochs", "1", "--from-scratch", *TINY)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    rank = json.loads((model / "liver_tumor" / "train_01" / "ranks" / "rank_0.json").read_text())
    names = lambda paths: sorted(Path(p).name.split(".")[0] for p in paths)  # noqa: E731
    assert names(rank["train_studies"]) == sorted(f"liver_{i}" for i in (0, 4, 5, 6, 8, 9, 10, 11, 12, 14))
    assert names(rank["val_studies"]) == sorted(f"liver_{i}" for i in (1, 2, 3, 7, 13))
    assert report["test"]["cases"] == 1 and report["test"]["per_case"][0]["id"] == "liver_15"
    assert 0 <= report["test"]["liver_dice"] <= 1


class Counting:
    """A deterministic transform that counts its calls (threads of the cache's warm-up included)."""

    def __init__(self) -> None:
        self.calls, self._lock, self.load = 0, threading.Lock(), LoadImaged(keys="image", image_only=False)

    def __call__(self, d: dict) -> dict:
        with self._lock:
            self.calls += 1
        return self.load(d)


def test_the_study_cache_preprocesses_once_keeps_to_its_budget_and_notices_new_labels(tmp_path):
    studies = sorted((ROOT / "sample-data").glob("phantom_2026_00*.nii.gz"))[:4]
    data = [{"image": str(shutil.copy(p, tmp_path / p.name))} for p in studies]
    first = Counting()
    one_study_mb = 160 * 160 * 64 * 4 * 1.5 / 2**20  # float32 voxels: room for one study, not two
    cache = StudyCache(data, first, Compose([]), "sig", tmp_path / "cache", memory_mb=one_study_mb, workers=2).warm()
    for _ in range(3):  # three epochs
        assert all(cache[i]["image"].shape == cache[i]["image"].shape for i in range(len(data)))
    assert first.calls == 4 and cache.computed == 4
    assert len(cache.memory) >= 1 and cache.memory_bytes <= one_study_mb * 2**20 and len(cache.memory) < 4
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 4

    second = Counting()  # the next run: everything from disk
    again = StudyCache(data, second, None, "sig", tmp_path / "cache", memory_mb=0, workers=1).warm()
    assert second.calls == 0 and again.from_disk == 4 and not again.memory
    assert torch.equal(again[2]["image"], cache[2]["image"])

    os.utime(data[1]["image"], ns=(time.time_ns(), time.time_ns() + 10**9))  # a study written again
    third = Counting()
    StudyCache(data, third, None, "sig", tmp_path / "cache", memory_mb=0).warm()
    assert third.calls == 1
    assert prune(tmp_path / "cache", data, "sig") == 1  # the stale entry
    assert prune(tmp_path / "cache", data, "other settings") == 4


def test_the_retrain_trigger_starts_one_run_per_n_labels_never_two(tmp_path):
    labels, runs, running = [0], [], threading.Event()

    def start() -> bool:
        runs.append(labels[0])
        running.set()
        return True

    trigger = RetrainTrigger(3, tmp_path / "retrain.json", lambda: labels[0], running.is_set, start)
    answers = []
    for _ in range(2):
        labels[0] += 1
        answers.append(trigger.label_saved()["retrain"])
    assert answers == ["1 of 3 new final labels", "2 of 3 new final labels"] and not runs
    labels[0] += 1
    threads = [threading.Thread(target=trigger.label_saved) for _ in range(8)]  # a burst of saves
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert runs == [3]
    labels[0] += 3
    assert "already queued or running" in trigger.label_saved()["retrain"] and runs == [3]
    running.clear()
    assert trigger.label_saved()["retrain"].startswith("started after 3") and runs == [3, 6]
    # a restart remembers the count
    assert RetrainTrigger(3, tmp_path / "retrain.json", lambda: 6, lambda: False, start).label_saved()["retrain"] \
        == "0 of 3 new final labels"


def test_the_server_retrains_after_every_n_final_labels(tmp_path):
    conf = {"retrain_every": "2", "max_epochs": "1", "spacing": "4", "crop_size": "32", "crops_per_volume": "2",
            "roi_size": "64", "pretrained_path": "none"}
    truth = ROOT / "sample-data" / "truth"
    with served(tmp_path, conf) as (client, studies, app_dir):
        answers = [client.save_label(i, str(truth / f"{i}.nii.gz"), tag="final")["retrain"]
                   for i in ("phantom_2026_004", "phantom_2026_005")]
        assert answers == ["1 of 2 new final labels", "started after 2 new final labels"]
        answers = [client.save_label(i, str(truth / f"{i}.nii.gz"), tag="final")["retrain"]
                   for i in ("phantom_2026_006", "phantom_2026_007")]
        assert answers[0] == "1 of 2 new final labels"
        assert "already queued or running" in answers[1]
        deadline = time.time() + 300
        while client.train_status()["status"] not in ("DONE", "ERROR"):
            assert time.time() < deadline
            time.sleep(1)
        runs = requests.get(f"{client.get_server_url()}/train/", params={"all": "true"}, timeout=30).json()
        assert len(runs) == 1 and runs[0]["status"] == "DONE", runs
        stats = client.info()["train_stats"]["liver_tumor"]
        assert [h["epoch"] for h in stats["history"]] == [1]
        assert (app_dir / "model" / "liver_tumor.pt").exists()


def test_the_weight_average_starts_at_the_weights_and_lags_them_more_and_more():
    from lib.trainers.averaging import WeightAverage

    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    average = WeightAverage(net, 0.99)
    with torch.no_grad():
        net[0].weight.add_(5.0)  # as a checkpoint loaded when training starts
    average.restart()
    w0 = net[0].weight.detach().clone()
    assert torch.equal(average.module[0].weight, w0)
    for step in range(1, 4):
        with torch.no_grad():
            net[0].weight.add_(1.0)
        before = average.module[0].weight.detach().clone()
        average.update()
        d = 0.0 if step == 1 else min(0.99, step / (9 + step))  # the first update takes the weights as they are
        assert torch.allclose(average.module[0].weight, d * before + (1 - d) * (w0 + step), atol=1e-6)
    net.train()(torch.randn(4, 2))  # batch-norm statistics are averaged too
    average.update()
    assert not torch.equal(average.module[1].running_mean, torch.zeros(2))
