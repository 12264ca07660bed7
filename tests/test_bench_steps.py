"""`liver-tumor bench steps`: a training step's data, transform by transform."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import ROOT, run_cli

STUDIES = ROOT / "sample-data"


def test_bench_steps_times_each_training_transform_on_labelled_studies(tmp_path):
    """One sample study at 4 mm, two steps with every crop painted: each transform's time, the step's, the deep copy
    it no longer makes, JSON and a chart."""
    studies = tmp_path / "studies"
    (studies / "truth").mkdir(parents=True)
    shutil.copy(STUDIES / "phantom_2026_000.nii.gz", studies)
    shutil.copy(STUDIES / "truth" / "phantom_2026_000.nii.gz", studies / "truth")
    proc = run_cli("bench", "steps", "--studies", studies, "--steps", "2", "--conf", "spacing", "4",
                   "--conf", "crop_size", "32", "--conf", "synth_prob", "1", "--conf", "crop_ratios", "1,1,1",
                   "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr[-1500:]
    result = json.loads(proc.stdout)
    assert result["conf"]["synth_prob"] == "1" and result["crops_per_step"] == 4
    (study,) = result["studies"]
    assert study["study"] == "phantom_2026_000" and study["deep_copy_ms"] > 0
    means = result["mean_ms"]
    assert {"RandCropByLabelClassesd", "SynthesizeTumoursd", "RandFlipd", "step"} <= set(means)
    assert means["step"] == pytest.approx(sum(v for k, v in means.items() if k != "step"), abs=0.5)
    assert json.loads((tmp_path / "out" / "steps.json").read_text()) == result
    assert (tmp_path / "out" / "steps.png").stat().st_size > 5_000


def test_bench_steps_refuses_crops_where_a_model_errs():
    proc = run_cli("bench", "steps", "--studies", STUDIES, "--conf", "crop_ratios", "1,1,1,1")
    assert proc.returncode == 2 and "give three numbers" in proc.stderr
