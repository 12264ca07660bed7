"""The app's REST API through FastAPI's TestClient: a server that starts with no model, refuses bad input,
trains a small model, then infers, scores, suggests studies and pre-annotates with it.

The tests share one app instance and run in file order, following the life of a server: no model -> a
training run publishes one -> it is used. Inference runs at a coarse working spacing (4 mm) to stay fast;
accuracy at the real spacing is checked by test_server_e2e.py with the demo checkpoint.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from fastapi.testclient import TestClient

from .conftest import ROOT

SAMPLE = ROOT / "sample-data"
CONF = {"pretrained_path": "none", "spacing": "4", "roi_size": "64", "crop_size": "32", "crops_per_volume": "2",
        "max_epochs": "3", "mc_samples": "2", "uncertainty_spacing": "4", "pyliverlesionseg_path": "none"}
UNLABELLED = "phantom_2026_006"
LABELLED = "phantom_2026_000"


def tree_state(folder: Path) -> dict:
    """Every file's bytes, but MONAI Label's own index, which it rewrites with timestamps."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in ("datastore_v2.json", ".lock")}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("app")
    studies, app_dir = root / "studies", root / "app"
    shutil.copytree(SAMPLE, studies)
    shutil.copytree(ROOT / "apps" / "liver_tumor", app_dir, ignore=shutil.ignore_patterns("model", "__pycache__"))
    env = {"MONAI_LABEL_APP_DIR": str(app_dir), "MONAI_LABEL_STUDIES": str(studies),
           "MONAI_LABEL_APP_CONF": json.dumps(CONF), "PYTHONPATH": os.environ.get("PYTHONPATH", str(ROOT)),
           # after training, MONAI Label asks its own HTTP port to rescore, which a TestClient does not have
           "MONAI_LABEL_AUTO_UPDATE_SCORING": "false"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # training and scoring run in subprocesses that read these
    from monailabel.config import settings

    settings.MONAI_LABEL_APP_DIR, settings.MONAI_LABEL_STUDIES = env["MONAI_LABEL_APP_DIR"], env["MONAI_LABEL_STUDIES"]
    settings.MONAI_LABEL_APP_CONF = CONF
    # the settings object was built when monailabel was first imported, before this env
    settings.MONAI_LABEL_AUTO_UPDATE_SCORING = False
    from monailabel.app import app
    from monailabel.interfaces.utils.app import app_instance

    with TestClient(app) as client:
        yield client, studies, app_instance()
    for k, v in old.items():
        os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def nifti_bytes(array: np.ndarray, affine: np.ndarray, name: str = "x.nii.gz") -> tuple[str, bytes, str]:
    buf = io.BytesIO()
    img = nib.Nifti1Image(array, affine)
    buf.write(gzip.compress(img.to_bytes()))
    return name, buf.getvalue(), "application/gzip"


def wait_for(client, path: str, timeout: float = 600) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = client.get(path).json()
        if status.get("status") in ("DONE", "ERROR"):
            return status
        time.sleep(0.5)
    raise TimeoutError(path)


def test_without_a_model_info_says_so_and_infer_is_a_clear_error(server):
    client, _, app = server
    model_file = Path(app.models["liver_tumor"].published)
    assert not model_file.exists()
    info = client.get("/info/").json()
    model = info["models"]["liver_tumor"]
    assert model["model"]["available"] is False and "no model" in model["model"]["status"]
    assert model["labels"] == {"liver": 1, "tumour": 2}
    r = client.post(f"/infer/liver_tumor?image={UNLABELLED}")
    assert r.status_code == 503 and "no liver_tumor model" in r.json()["detail"]
    assert client.get("/info/").status_code == 200  # still serving


BAD_UPLOADS = {
    "not an image": ("notes.nii.gz", b"this is not an image", "not a readable NIfTI"),
    "empty file": ("empty.nii.gz", b"", "empty"),
    "wrong format": ("photo.png", b"\x89PNG\r\n", "must be NIfTI"),
}


@pytest.mark.parametrize("case", list(BAD_UPLOADS))
def test_bad_image_uploads_are_refused_and_change_nothing(server, case):
    client, studies, _ = server
    before = tree_state(studies)
    name, content, message = BAD_UPLOADS[case]
    r = client.put("/datastore/?image=bad_upload", files={"file": (name, content, "application/octet-stream")})
    assert r.status_code == 422 and message in r.json()["detail"]
    assert tree_state(studies) == before


def test_truncated_2d_and_4d_images_are_refused(server):
    client, studies, _ = server
    before = tree_state(studies)
    good = nifti_bytes(np.random.default_rng(0).normal(0, 100, (20, 20, 12)).astype(np.int16), np.eye(4))
    truncated = (good[0], good[1][: len(good[1]) // 2], good[2])
    cases = {"truncated": (truncated, "not a readable NIfTI"),
             "2D": (nifti_bytes((np.ones((20, 20)) * np.arange(20)).astype(np.int16), np.eye(4)), "2D"),
             "4D": (nifti_bytes(np.arange(20 * 20 * 8 * 3, dtype=np.int16).reshape(20, 20, 8, 3), np.eye(4)), "4D"),
             "NaN": (nifti_bytes(np.full((20, 20, 8), np.nan, np.float32), np.eye(4)), "NaN")}
    for name, (upload, message) in cases.items():
        r = client.put("/datastore/?image=bad_upload", files={"file": upload})
        assert r.status_code == 422, name
        assert message in r.json()["detail"], (name, r.json())
    assert tree_state(studies) == before


def test_bad_labels_are_refused_and_change_nothing(server):
    client, studies, _ = server
    image = nib.load(studies / f"{UNLABELLED}.nii.gz")
    good = np.zeros(image.shape, np.uint8)
    before = tree_state(studies)
    cases = {
        "shape": (nifti_bytes(good[:-1], image.affine), "shape"),
        "affine": (nifti_bytes(good, image.affine @ np.diag([1, 1, 2, 1])), "affine"),
        "values": (nifti_bytes(np.full(image.shape, 7, np.uint8), image.affine), "values [7]"),
        "not an image": (("l.nii.gz", b"garbage", "application/gzip"), "not a readable NIfTI"),
    }
    for name, (upload, message) in cases.items():
        r = client.put(f"/datastore/label?image={UNLABELLED}&tag=final", files={"label": upload})
        assert r.status_code == 422, (name, r.text)
        assert message in r.json()["detail"], (name, r.json())
    r = client.put("/datastore/label?image=no_such_study&tag=final", files={"label": nifti_bytes(good, image.affine)})
    assert r.status_code == 404 and "no_such_study" in r.json()["detail"]
    assert tree_state(studies) == before


def test_unknown_names_are_404(server):
    client, _, _ = server
    assert client.post("/infer/liver_tumor?image=no_such_study").status_code == 404
    assert client.post("/infer/spleen?image=" + UNLABELLED).status_code == 404
    assert client.post("/activelearning/no_such_strategy", json={}).status_code == 404
    r = client.post("/infer/liver_tumor?image=..%2F..%2Fetc%2Fpasswd")
    assert r.status_code == 422 and "invalid image id" in r.json()["detail"]


@pytest.mark.parametrize("path, options, name", [
    (f"/infer/liver_tumor?image={UNLABELLED}", {"cascade": "maybe"}, "cascade"),
    (f"/infer/liver_tumor?image={UNLABELLED}", {"sw_overlap": 1.5}, "sw_overlap"),
    (f"/infer/liver_tumor?image={UNLABELLED}", {"fit_windows": "sometimes"}, "fit_windows"),
    ("/train/liver_tumor", {"max_epochs": 0}, "max_epochs"),
    ("/train/liver_tumor", {"resume": "maybe"}, "resume"),
    ("/train/liver_tumor", {"loss": "focal"}, "loss"),
    ("/train/liver_tumor", {"pseudo_label_weight": 0}, "pseudo_label_weight"),
])
def test_a_bad_request_option_is_a_422_naming_it_before_any_work(server, path, options, name):
    client, _, _ = server
    if path.startswith("/infer"):
        r = client.post(path, data={"params": json.dumps(options)})
    else:
        r = client.post(path, json=options)
    assert r.status_code == 422, r.text[:300]
    assert r.json()["detail"].startswith(f"{name} must be"), r.json()
    assert client.get("/train/", params={"all": True}).status_code == 404  # no run was queued, none ever ran


def test_pseudo_labels_need_the_model_trained_on_patients(server):
    client, _, _ = server
    r = client.post("/train/liver_tumor", json={"pseudo_labels": True})
    assert r.status_code == 422 and "pyliverlesionseg-model" in r.json()["detail"]
    assert client.get("/info/").json()["preannotation"]["model"] is None  # no model at all yet


def test_a_tiny_training_run_publishes_a_model_and_reports_dice_per_class(server):
    client, _, app = server
    r = client.post("/train/liver_tumor", json={"max_epochs": 3, "pretrained": False, "seed": 0})
    assert r.status_code == 200, r.text
    status = wait_for(client, "/train/")
    assert status["status"] == "DONE", "\n".join(status.get("details", []))
    stats = client.get("/info/").json()["train_stats"]["liver_tumor"]
    assert [h["epoch"] for h in stats["history"]] == [1, 2, 3]
    for h in stats["history"]:
        assert {"loss", "val_liver_dice", "val_tumour_dice", "val_mean_dice", "seconds", "elapsed_seconds"} <= set(h)
        assert 0 <= h["val_liver_dice"] <= 1
    # each row's seconds are its own epoch's; elapsed_seconds counts from the start of the run (the curves' title)
    assert stats["history"][-1]["elapsed_seconds"] >= sum(h["seconds"] for h in stats["history"]) - 1
    assert stats["published_epoch"] in (1, 2, 3)
    assert Path(app.models["liver_tumor"].published).exists()
    model = client.get("/info/").json()["models"]["liver_tumor"]["model"]
    assert model["available"] and model["path"].endswith("liver_tumor.pt")


def test_infer_returns_a_label_on_the_image_grid_with_a_report(server):
    client, studies, _ = server
    r = client.post(f"/infer/liver_tumor?image={UNLABELLED}&output=image", data={"params": json.dumps(
        {"roi_size": [64, 64, 64], "sw_overlap": 0.1, "sw_batch_size": 2})})
    assert r.status_code == 200, r.text[:500]
    label = nib.Nifti1Image.from_bytes(gzip.decompress(r.content))
    image = nib.load(studies / f"{UNLABELLED}.nii.gz")
    assert label.shape == image.shape
    assert np.allclose(label.affine, image.affine, atol=1e-4)
    assert set(np.unique(np.asanyarray(label.dataobj))) <= {0, 1, 2}

    result = client.post(f"/infer/liver_tumor?image={UNLABELLED}&output=json").json()
    assert result["label_names"] == {"liver": 1, "tumour": 2}
    assert {"pre", "infer", "invert", "post", "write", "total"} <= set(result["latencies"])
    assert result["noise_hu"] > 0  # measured on every study (smoothed only above denoise_above_hu)
    assert result["tumour_count"] == len(result["lesion_volumes_ml"])
    assert abs(sum(result["lesion_volumes_ml"]) - result["tumour_volume_ml"]) < 0.01 + 0.001 * result["tumour_count"]
    bad = client.post(f"/infer/liver_tumor?image={UNLABELLED}", data={"params": json.dumps({"roi_size": [8, 8]})})
    assert bad.status_code == 422 and "roi_size" in bad.json()["detail"]


def test_strategies_pick_unlabelled_studies_and_say_why(server):
    from lib.configs.liver_tumor import DEFAULT_STRATEGY

    client, studies, app = server
    ds = app.datastore()
    unlabelled = set(ds.get_unlabeled_images())
    assert len(unlabelled) == 8
    strategies = client.get("/info/").json()["strategies"]
    assert list(strategies)[0] == DEFAULT_STRATEGY
    assert {"random", "first", "mc_dropout", "uncertain_diverse", "cold_start", "clasp_pe"} <= set(strategies)

    # the uncertainty strategies rank by scores computed beforehand (tests/test_server_responsive.py: before then)
    r = client.post("/scoring/mc_dropout?run_sync=true")  # scored in a process of its own, as MONAI Label does
    assert r.status_code == 200, r.text
    ds.refresh()
    # mc_dropout: the most uncertain, its scores cached per model version; the same client may be offered it again
    pick = client.post("/activelearning/mc_dropout", json={"client_id": "m"}).json()
    scores = {row["id"]: row["score"] for row in pick["why"]["top"]}
    assert pick["id"] in unlabelled and pick["id"] == max(scores, key=scores.get) and 0 <= pick["score"] <= 1
    assert pick["why"]["scoring"]["scored"] == 12 and "fallback" not in pick["why"]
    info = ds.get_image_info(pick["id"])["mc_dropout"]
    assert info["model"] == app.models["liver_tumor"].scorer.version() and len(info["embedding"]) == 256
    again = client.post("/activelearning/mc_dropout", json={"client_id": "m"}).json()
    assert again["id"] == pick["id"] and ds.get_image_info(pick["id"])["mc_dropout"] == info  # nothing recomputed

    # ClaSP PE: its first slot is the tumour stratum's (the liver's where no study shows tumour), power-sampled with
    # beta for 4 labelled studies
    clasp = client.post("/activelearning/clasp_pe", json={"client_id": "k"}).json()
    slot = clasp["why"]["picks"][0]
    seen = any(ds.get_image_info(i)["mc_dropout"]["class_entropy"]["tumour"] > 0 for i in unlabelled - {pick["id"]})
    assert clasp["id"] in unlabelled - {pick["id"]} and slot["ranked_by"] == "clasp_pe"
    assert slot["slot"] == ("tumour" if seen else "liver") and "fallback" not in clasp["why"]
    assert slot["beta"] == 2.0 and all(0 <= v <= 1 for v in slot["class_entropy"].values())
    # annotators asking at once get different studies: 2 concurrent random picks
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda c: client.post("/activelearning/random", json={"client_id": c}).json(),
                                ["r1", "r2"]))
    served = [pick["id"], clasp["id"]] + [a["id"] for a in answers]
    # one asking for several: uncertain and different from each other and from what others hold
    batch = client.post("/activelearning/uncertain_diverse", json={"client_id": "u", "count": 2}).json()
    assert len(batch["ids"]) == 2 and batch["why"]["covered"] == 4 + 4  # 4 labelled, 4 held by others
    assert all(0 <= p["score"] <= 1 and 0 <= p["distance"] <= 1 for p in batch["why"]["picks"])
    served += batch["ids"]
    cold = client.post("/activelearning/cold_start", json={"client_id": "c"}).json()
    first = client.post("/activelearning/first", json={"client_id": "f"}).json()
    served += [cold["id"], first["id"]]
    assert sorted(served) == sorted(unlabelled)  # 8 clients, 8 different unlabelled studies, none labelled
    assert client.post("/activelearning/random", json={"client_id": "late"}).json() == {}  # all are held
    assert client.post("/activelearning/first", json={"client_id": "f"}).json()["id"] == first["id"]
    r = client.post("/activelearning/random", json={"client_id": "x", "count": 0})
    assert r.status_code == 422 and "count" in r.json()["detail"]


def test_label_change_scoring_is_per_class(server):
    client, studies, app = server
    image = nib.load(studies / f"{UNLABELLED}.nii.gz")
    original = np.zeros(image.shape, np.uint8)
    original[10:30, 10:30, 10:20] = 1
    original[15:20, 15:20, 12:16] = 2
    final = original.copy()
    final[10:20, 10:30, 10:20] = np.where(final[10:20, 10:30, 10:20] == 2, 2, 0)  # annotator removed half the liver
    for tag, arr in (("original", original), ("final", final)):
        r = client.put(f"/datastore/label?image={UNLABELLED}&tag={tag}",
                       files={"label": nifti_bytes(arr, image.affine)})
        assert r.status_code == 200, r.text
    r = client.post("/scoring/label_change?run_sync=true")
    assert r.status_code == 200
    change = app.datastore().get_image_info(UNLABELLED)["label_change"]
    a, b = original == 1, final == 1
    assert change["liver_dice"] == pytest.approx(2 * (a & b).sum() / (a.sum() + b.sum()), abs=1e-4)
    assert change["tumour_dice"] == 1.0
    voxel_ml = abs(np.linalg.det(image.affine[:3, :3])) / 1000
    assert change["liver_removed_ml"] == pytest.approx((a & ~b).sum() * voxel_ml, abs=1e-3)


def test_batch_infer_pre_annotates_unlabelled_studies_as_original(server):
    client, studies, app = server
    ds = app.datastore()
    todo = [i for i in ds.get_unlabeled_images() if "original" not in ds.get_labels_by_image_id(i)]
    r = client.post("/batch/infer/liver_tumor?images=unlabeled&run_sync=true", json={"label_tag": "original",
                                                                                   "device": "cpu"})
    assert r.status_code == 200, r.text
    for image_id in todo:
        path = studies / "labels" / "original" / f"{image_id}.nii.gz"
        assert path.exists(), image_id
        label, image = nib.load(path), nib.load(studies / f"{image_id}.nii.gz")
        assert label.shape == image.shape and np.allclose(label.affine, image.affine, atol=1e-4)


def test_fine_tuning_publishes_only_a_better_model(server):
    client, _, app = server
    published = Path(app.models["liver_tumor"].published)
    before = published.stat().st_mtime_ns
    # with blob loss and the per-lesion cross-entropy, so that both run through the real engine on real crops
    r = client.post("/train/liver_tumor", json={"max_epochs": 1, "seed": 1, "blob_weight": 1.0,
                                                "lesion_ce_weight": 0.5})
    assert r.status_code == 200
    assert wait_for(client, "/train/")["status"] == "DONE"
    stats = client.get("/info/").json()["train_stats"]["liver_tumor"]
    baseline, epoch = stats["baseline_metric"], stats["history"][0]
    assert np.isfinite(epoch["loss"])
    assert isinstance(baseline, float)  # the model in use, measured on this run's validation data first
    if epoch["val_mean_dice"] > baseline:
        assert stats["published_epoch"] == 1 and published.stat().st_mtime_ns != before
    else:
        assert stats["published_epoch"] is None and published.stat().st_mtime_ns == before
