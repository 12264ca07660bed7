"""Medical Decathlon Task03_Liver: a stand-in folder with the real layout, import, split, download."""

from __future__ import annotations

import hashlib
import http.server
import json
import shutil
import tarfile
import threading
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from monailabel.datastore.local import LocalDatastore

from lib.data.decathlon import cases, datalist, load_split, make_standin

from .conftest import cli, cli_error


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory) -> Path:
    return make_standin(tmp_path_factory.mktemp("msd"), count=4, seed=9, test_count=2)


def tree_state(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_standin_has_the_real_layout(task_dir):
    meta = json.loads((task_dir / "dataset.json").read_text())
    assert task_dir.name == "Task03_Liver"
    assert meta["labels"] == {"0": "background", "1": "liver", "2": "cancer"} and meta["numTraining"] == 4
    assert meta["training"][0] == {"image": "./imagesTr/liver_0.nii.gz", "label": "./labelsTr/liver_0.nii.gz"}
    assert meta["test"] == ["./imagesTs/liver_131.nii.gz", "./imagesTs/liver_132.nii.gz"]


def test_named_split_has_the_seed_sizes():
    split = load_split("seed")
    sizes = {k: len(split[k]) for k in ("train", "validation", "test")}
    assert sizes == {"train": 91, "validation": 26, "test": 14}
    every = split["train"] + split["validation"] + split["test"]
    assert sorted(every, key=lambda c: int(c.split("_")[1])) == [f"liver_{i}" for i in range(131)]


def test_cli_split_prints_it(task_dir):
    proc = cli("decathlon", "split", "--name", "seed", "--task-dir", task_dir)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    split = load_split("seed")
    for subset in ("train", "validation", "test"):
        expected = sorted(c for c in ("liver_0", "liver_1", "liver_2", "liver_3") if c in split[subset])
        assert sorted(Path(d["image"]).name.removesuffix(".nii.gz") for d in out[subset]) == expected


def test_read_in_place_as_an_extra_training_source(task_dir):
    dl = datalist(task_dir)
    assert len(dl) == 4 and all(Path(d["image"]).exists() and Path(d["label"]).exists() for d in dl)
    assert len(cases(task_dir, unlabelled=True)) == 6


def test_import_into_a_datastore_monai_label_opens(task_dir, tmp_path):
    store = tmp_path / "store"
    proc = cli("decathlon", "import", task_dir, "--into", store, "--unlabelled")
    assert proc.returncode == 0, proc.stderr
    ds = LocalDatastore(str(store), extensions=("*.nii.gz", "*.nii"))
    assert sorted(ds.list_images()) == sorted(f"liver_{i}" for i in (0, 1, 2, 3, 131, 132))
    assert sorted(ds.get_labeled_images()) == [f"liver_{i}" for i in range(4)]
    for d in ds.datalist():
        name = Path(d["image"]).name
        assert np.array_equal(np.asanyarray(nib.load(d["label"]).dataobj),
                              np.asanyarray(nib.load(task_dir / "labelsTr" / name).dataobj))
    # importing again changes nothing
    before = {p: p.stat().st_mtime_ns for p in store.rglob("*.nii.gz")}
    assert cli("decathlon", "import", task_dir, "--into", store).returncode == 0
    assert {p: p.stat().st_mtime_ns for p in store.rglob("*.nii.gz")} == before


def test_import_one_subset_of_the_split(task_dir, tmp_path):
    store = tmp_path / "store"
    proc = cli("decathlon", "import", task_dir, "--into", store, "--split", "seed", "--subset", "train")
    wanted = [c for c in load_split("seed")["train"] if c in {f"liver_{i}" for i in range(4)}]
    if not wanted:
        assert proc.returncode == 2
        return
    assert proc.returncode == 0, proc.stderr
    assert sorted(LocalDatastore(str(store)).get_labeled_images()) == sorted(wanted)


def test_bad_folders_are_named_and_nothing_is_written(task_dir, tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    (store / "keep.txt").write_text("user data")
    before = tree_state(store)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no dataset.json" in cli_error("decathlon", "import", empty, "--into", store)
    assert "does not exist" in cli_error("decathlon", "import", tmp_path / "nope", "--into", store)

    broken = tmp_path / "broken" / "Task03_Liver"
    shutil.copytree(task_dir, broken)
    (broken / "labelsTr" / "liver_2.nii.gz").unlink()
    assert "liver_2.nii.gz" in cli_error("decathlon", "import", broken, "--into", store)

    shutil.rmtree(broken)
    shutil.copytree(task_dir, broken)
    label = nib.load(broken / "labelsTr" / "liver_3.nii.gz")
    nib.save(nib.Nifti1Image(np.asanyarray(label.dataobj)[:-1], label.affine), broken / "labelsTr" / "liver_3.nii.gz")
    assert "liver_3" in cli_error("decathlon", "import", broken, "--into", store)

    (broken / "dataset.json").write_text("{not json")
    assert "not valid JSON" in cli_error("decathlon", "import", broken, "--into", store)
    assert "--subset" in cli_error("decathlon", "import", task_dir, "--into", store, "--subset", "train")
    assert "unknown split" in cli_error("decathlon", "import", task_dir, "--into", store, "--split",
                                        "nope", "--subset", "train")
    assert tree_state(store) == before


def test_a_different_study_of_the_same_name_is_not_overwritten(task_dir, tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    (store / "liver_1.nii.gz").write_bytes(b"someone else's study")
    before = tree_state(store)
    assert "different study named liver_1" in cli_error("decathlon", "import", task_dir, "--into", store)
    assert tree_state(store) == before


@pytest.fixture
def served_archive(task_dir, tmp_path):
    """Task03_Liver.tar served over HTTP on loopback, as the real resource is."""
    web = tmp_path / "web"
    web.mkdir()
    tar = web / "Task03_Liver.tar"
    with tarfile.open(tar, "w") as tf:
        tf.add(task_dir, arcname="Task03_Liver")
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(web), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/Task03_Liver.tar", hashlib.md5(tar.read_bytes()).hexdigest()
    server.shutdown()


def test_download_through_monai_checks_the_md5(served_archive, task_dir, tmp_path):
    url, md5 = served_archive
    proc = cli("decathlon", "download", "--out", tmp_path / "dl", "--url", url, "--md5", md5)
    assert proc.returncode == 0, proc.stderr
    got = tmp_path / "dl" / "Task03_Liver"
    assert tree_state(got) == tree_state(task_dir) and not (tmp_path / "dl" / "Task03_Liver.tar").exists()
    assert "already exists" in cli_error("decathlon", "download", "--out", tmp_path / "dl", "--url", url, "--md5", md5)

    line = cli_error("decathlon", "download", "--out", tmp_path / "bad", "--url", url, "--md5", "0" * 32)
    assert "could not download" in line and not (tmp_path / "bad" / "Task03_Liver").exists()
    line = cli_error("decathlon", "download", "--out", tmp_path / "gone", "--url", url + ".missing")
    assert "could not download" in line


def test_the_default_resource_is_monais():
    from monai.apps.datasets import DecathlonDataset

    from lib.data.decathlon import resource

    assert resource() == (DecathlonDataset.resource["Task03_Liver"], DecathlonDataset.md5["Task03_Liver"])
