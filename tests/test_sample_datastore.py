"""The committed sample datastore: what MONAI Label opens, how big it is, and that it is what its command makes."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
from monailabel.datastore.local import LocalDatastore

from lib.data.phantoms import generate_study
from lib.data.sample_datastore import COUNT, LABELLED, PRESET, SEED

from .conftest import ROOT

SAMPLE = ROOT / "sample-data"


def test_monai_label_opens_it_as_it_is(tmp_path):
    store = tmp_path / "sample-data"
    shutil.copytree(SAMPLE, store)
    ds = LocalDatastore(str(store), extensions=("*.nii.gz", "*.nii"))
    assert len(ds.list_images()) == COUNT
    assert sorted(ds.get_labeled_images()) == sorted(f"phantom_{SEED}_{i:03d}" for i in LABELLED)
    assert len(ds.get_unlabeled_images()) == COUNT - len(LABELLED)
    for d in ds.datalist():
        image, label = nib.load(d["image"]), nib.load(d["label"])
        assert image.shape == label.shape and np.allclose(image.affine, label.affine)
        assert set(np.unique(np.asanyarray(label.dataobj))) <= {0, 1, 2}


def test_it_is_small():
    size = sum(p.stat().st_size for p in SAMPLE.rglob("*") if p.is_file())
    assert size < 30 * 2**20, size


def test_it_is_what_the_command_makes():
    """Regenerating two of its studies from their seed gives the same voxels (the rest follow by determinism)."""
    for i in (0, COUNT - 1):
        sid = f"phantom_{SEED}_{i:03d}"
        study = generate_study(SEED, i, PRESET)
        assert np.array_equal(np.asanyarray(nib.load(SAMPLE / f"{sid}.nii.gz").dataobj),
                              np.asanyarray(study.image.dataobj))
        assert np.array_equal(np.asanyarray(nib.load(SAMPLE / "truth" / f"{sid}.nii.gz").dataobj),
                              np.asanyarray(study.label.dataobj))
        assert json.loads((SAMPLE / f"{sid}.json").read_text()) == json.loads(json.dumps(study.params))
