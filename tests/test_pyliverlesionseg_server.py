"""pyliverlesionseg in the running server: listed and chosen for pre-annotation, its bad requests refused, and a
training run that bootstraps from its pseudo-labels and then compares both models. Apart from the port's tests
(test_pyliverlesionseg.py) so that the two workers of `make test` can take them side by side."""

from __future__ import annotations

import nibabel as nib
import numpy as np


def test_the_server_says_who_pre_annotates_and_bootstraps_from_it(weights, tmp_path):
    """Listed first and chosen while no training has compared the two; a training run with pseudo-labels keeps
    them under their own tag, then compares both models on its validation study and says so with both scores."""
    import gzip
    import json
    import shutil

    import requests

    from lib.settings import DEMO_CHECKPOINT
    from lib.trainers.pseudo_labels import TAG

    from .conftest import ROOT, served

    studies = tmp_path / "copy"
    shutil.copytree(ROOT / "sample-data", studies)
    for i in range(5, 12):  # one unlabelled study shows it (each costs the package's pipeline, about 40 s)
        for path in studies.rglob(f"phantom_2026_{i:03d}.*"):
            path.unlink()
    conf = {"pyliverlesionseg_path": str(weights), "pretrained_path": str(DEMO_CHECKPOINT), "spacing": "4",
            "roi_size": "64", "crop_size": "32", "crops_per_volume": "2"}
    with served(tmp_path / "server", conf, studies) as (client, store, _):
        info = client.info()
        assert list(info["models"])[0] == "pyliverlesionseg"
        assert info["preannotation"]["model"] == "pyliverlesionseg" and "compared" in info["preannotation"]["why"]
        assert info["models"]["pyliverlesionseg"]["model"]["available"]
        url = client.get_server_url()
        assert requests.post(f"{url}/infer/pyliverlesionseg?image=no_such_study", timeout=60).status_code == 404
        constant = gzip.compress(nib.Nifti1Image(np.full((40, 40, 12), 50, np.int16), np.eye(4)).to_bytes())
        r = requests.post(f"{url}/infer/pyliverlesionseg", files={"file": ("c.nii.gz", constant)}, timeout=60)
        assert r.status_code == 422 and "constant" in r.json()["detail"]
        r = requests.post(f"{url}/infer/pyliverlesionseg?image=phantom_2026_004",
                          data={"params": json.dumps({"lesion_window": [90, 84, 42]})}, timeout=60)
        assert r.status_code == 422 and r.json()["detail"].startswith("lesion_window must be")
        r = requests.post(f"{client.get_server_url()}/train/liver_tumor", params={"run_sync": True},
                          json={"max_epochs": 1, "pseudo_labels": True, "seed": 0}, timeout=900)
        assert r.status_code == 200, r.text[:500]
        assert sorted(p.name for p in (store / "labels" / TAG).iterdir()) == ["phantom_2026_004.nii.gz"]
        assert len(list((store / "labels" / "final").iterdir())) == 4  # pseudo-labels are never final
        chosen = client.info()["preannotation"]
        scores = chosen["scores"]
        assert set(scores) == {"liver_tumor", "pyliverlesionseg"} and all(0 <= s <= 1 for s in scores.values())
        assert chosen["model"] == max(scores, key=scores.get) and "mean Dice" in chosen["why"]
