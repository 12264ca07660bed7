"""Killing things: the server in the middle of label saves and of a training run, a training process on its own,
and a process in the middle of publishing a model. After each, what was acknowledged is there and whole, the
datastore opens, and the published model loads."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import threading
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import requests

from lib.bench.server import ServerProcess
from lib.model.checkpoint import load_network, save_state_dict
from lib.model.network import build_unet
from lib.settings import DEMO_CHECKPOINT

from .conftest import ROOT, copy_app

CONF = {"pretrained_path": str(DEMO_CHECKPOINT), "spacing": "4", "crop_size": "32", "crops_per_volume": "2",
        "max_epochs": "200", "roi_size": "64", "pyliverlesionseg_path": "none"}
IMAGES = ["phantom_2026_004", "phantom_2026_005", "phantom_2026_006"]


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _label(image: nib.Nifti1Image, n: int) -> bytes:
    """An uncompressed label (a larger file: a longer write to be killed in) unique to n."""
    label = np.zeros(image.shape, np.uint8)
    label[10 + n % 50:40 + n % 50, 20:60, 5:20] = 1
    label[20 + n % 50:25 + n % 50, 30:35, 8:10] = 2
    return nib.Nifti1Image(label, image.affine).to_bytes()


@pytest.fixture()
def datastore(tmp_path):
    studies = tmp_path / "studies"
    shutil.copytree(ROOT / "sample-data", studies)
    return studies, copy_app(tmp_path / "app")


def test_kill_during_label_saves_loses_nothing_acknowledged(datastore, tmp_path):
    studies, app_dir = datastore
    server = ServerProcess(app_dir, studies, CONF, tmp_path / "server.log")
    images = {i: nib.load(studies / f"{i}.nii.gz") for i in IMAGES}
    acked: dict[str, str] = {}  # image -> digest of the last label whose save was answered 200
    sent: dict[str, set[str]] = {i: set() for i in IMAGES}  # every label sent (a save cut by the kill may land)
    rng = random.Random(0)
    n = 0
    refused: list[str] = []
    for _ in range(3):
        server.start()
        stop = threading.Event()

        def save_in_a_loop() -> None:
            nonlocal n
            session = requests.Session()
            while not stop.is_set():
                image = IMAGES[n % len(IMAGES)]
                content = _label(images[image], n)
                n += 1
                sent[image].add(_digest(content))
                try:
                    r = session.put(f"{server.url}/datastore/label?image={image}&tag=final",
                                    files={"label": (f"{image}.nii", content)}, timeout=60)
                except requests.RequestException:
                    return  # the server is gone
                if r.status_code != 200:
                    refused.append(r.text[:200])
                    return
                acked[image] = _digest(content)

        saver = threading.Thread(target=save_in_a_loop)
        saver.start()
        time.sleep(rng.uniform(1.0, 2.5))
        server.kill(signal.SIGKILL)
        stop.set()
        saver.join(timeout=60)
        assert refused == []

        # what a restart finds: an index that is JSON, and every acknowledged label whole (it, or a later one)
        json.loads((studies / "datastore_v2.json").read_text())
        for image, digest in acked.items():
            on_disk = _digest((studies / "labels" / "final" / f"{image}.nii").read_bytes())
            assert on_disk == digest or on_disk in sent[image], image
    assert len(acked) == len(IMAGES) and n > 3 * len(IMAGES)

    with server:  # it serves them, and a write the kill cut short left nothing behind
        for image, digest in acked.items():
            r = requests.get(f"{server.url}/datastore/label?label={image}&tag=final", timeout=60)
            assert r.status_code == 200 and _digest(r.content) in sent[image]
        assert not [p.name for p in studies.rglob(".*.part")]


def _train(url: str) -> None:
    r = requests.post(f"{url}/train/liver_tumor", json={"max_epochs": 200, "pretrained": False, "seed": 0},
                      timeout=60)
    assert r.status_code == 200 and r.json().get("status") in ("SUBMITTED", "RUNNING"), r.text


def _wait_for_publish(app_dir: Path, after: float, timeout: float = 300) -> Path:
    model = app_dir / "model" / "liver_tumor.pt"
    deadline = time.time() + timeout
    while not (model.exists() and model.stat().st_mtime > after):
        assert time.time() < deadline, "no model was published"
        time.sleep(0.5)
    return model


def _training_process(server_pid: int, timeout: float = 60) -> int:
    """The training subprocess MONAI Label started (python -m monailabel.interfaces.utils.app -m train)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    cmdline = (entry / "cmdline").read_bytes().split(b"\0")
                    if b"monailabel.interfaces.utils.app" in cmdline and os.getpgid(int(entry.name)) == server_pid:
                        return int(entry.name)
                except (OSError, ProcessLookupError):
                    continue
        time.sleep(0.2)
    raise AssertionError("no training process found")


def test_a_killed_server_keeps_its_model_and_a_killed_training_is_an_error(datastore, tmp_path):
    studies, app_dir = datastore
    server = ServerProcess(app_dir, studies, CONF, tmp_path / "server.log").start()
    try:
        # the whole server killed at some moment of a run after its first publish: it may be validating, writing
        # a resume point, or publishing a better model
        started = time.time()
        _train(server.url)
        _wait_for_publish(app_dir, started)
        time.sleep(random.Random(1).uniform(0.0, 6.0))
    finally:
        server.kill(signal.SIGKILL)
    model = app_dir / "model" / "liver_tumor.pt"
    load_network(model)  # whole
    published = model.read_bytes()
    json.loads((studies / "datastore_v2.json").read_text())

    with server:
        info = requests.get(f"{server.url}/info/", timeout=60).json()
        assert info["models"]["liver_tumor"]["model"]["path"] == str(model)
        # a training process that dies (as the out-of-memory killer would end it) is reported as failed, and the
        # server goes on serving with the last good model
        _train(server.url)
        os.kill(_training_process(server.process.pid), signal.SIGKILL)
        deadline = time.time() + 60
        while (status := requests.get(f"{server.url}/train/", timeout=60).json())["status"] in ("SUBMITTED",
                                                                                               "RUNNING"):
            assert time.time() < deadline
            time.sleep(0.5)
        assert status["status"] == "ERROR", status
        r = requests.post(f"{server.url}/infer/liver_tumor?image=phantom_2026_007&output=json", timeout=300)
        assert r.status_code == 200 and r.json()["liver_volume_ml"] >= 0
        assert model.read_bytes() == published


def test_a_publish_killed_at_any_moment_leaves_a_loadable_model(tmp_path):
    """A process publishing models back to back, killed at random moments (a forked child, so that each kill
    costs no start-up): the model file always loads, as the old or the new weights."""
    path = tmp_path / "liver_tumor.pt"
    networks = [build_unet(0.2) for _ in range(2)]
    save_state_dict(networks[0], path, meta={"epoch": 0})
    rng = random.Random(2)
    for kill in range(12):
        pid = os.fork()
        if pid == 0:  # the child publishes until it is killed
            try:
                n = 0
                while True:
                    save_state_dict(networks[n % 2], path, meta={"epoch": n})
                    n += 1
            finally:
                os._exit(1)
        time.sleep(rng.uniform(0.05, 1.0))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        loaded = load_network(path).state_dict()
        assert any(all(np.array_equal(loaded[k].numpy(), net.state_dict()[k].numpy()) for k in loaded)
                   for net in networks), kill
        json.loads(path.with_suffix(".json").read_text())
