"""The training task's data: datastore labels plus a Decathlon folder, and the seed's crops."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from monai.transforms import Compose

from lib.configs.liver_tumor import LiverTumor
from lib.data.decathlon import make_standin
from lib.datastore import CheckedLocalDatastore
from lib.errors import InvalidInput

from .conftest import ROOT


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    config = LiverTumor()
    config.init("liver_tumor", str(tmp_path_factory.mktemp("model")), {"pretrained_path": "none", "spacing": "4",
                                                                       "crop_size": "32"}, None)
    return config.trainer()


def test_training_data_is_the_final_labels_plus_a_decathlon_folder(task, tmp_path):
    store = tmp_path / "store"
    shutil.copytree(ROOT / "sample-data", store)
    ds = CheckedLocalDatastore(str(store))
    assert len(task.pre_process({}, ds)) == 4
    msd = make_standin(tmp_path / "msd", count=3, seed=4, test_count=0)
    data = task.pre_process({"decathlon_dir": str(msd)}, ds)
    assert len(data) == 7 and sum("Task03_Liver" in d["image"] for d in data) == 3


def test_too_few_labels_is_a_clear_error(task, tmp_path):
    store = tmp_path / "store"
    shutil.copytree(ROOT / "sample-data", store, ignore=shutil.ignore_patterns("labels"))
    with pytest.raises(InvalidInput, match="at least 2 studies with final labels"):
        task.pre_process({}, CheckedLocalDatastore(str(store)))


def test_crops_are_balanced_between_foreground_and_background(task):
    class Ctx:
        request = {"crop_size": 32, "crops_per_volume": 8}

    transforms = Compose(task.train_pre_transforms(Ctx())).set_random_state(seed=0)
    sample = {"image": str(ROOT / "sample-data" / "phantom_2026_000.nii.gz"),
              "label": str(ROOT / "sample-data" / "labels" / "final" / "phantom_2026_000.nii.gz")}
    crops = transforms(sample)
    assert len(crops) == 8
    centres = [float(c["label"][0, 16, 16, 16] > 0) for c in crops]
    assert all(tuple(c["image"].shape) == (1, 32, 32, 32) for c in crops)
    assert 0.25 <= np.mean(centres) <= 0.75  # 1:1 foreground and background centres (a fixed random state)
    assert all(float(c["image"].min()) >= -0.11 and float(c["image"].max()) <= 1.11 for c in crops)
    assert all(c["label"].dtype == torch.float32 for c in crops)
