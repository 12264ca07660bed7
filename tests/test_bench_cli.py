"""The benchmark commands as a user runs them."""

import nibabel as nib
import numpy as np

from .conftest import cli_error, run_cli


def test_bench_accuracy_needs_studies_with_truth(tmp_path):
    (tmp_path / "truth").mkdir()
    line = cli_error("bench", "accuracy", "--studies", tmp_path)
    assert "has a label of the same name" in line


def test_bench_infer_names_an_unknown_case(tmp_path):
    line = cli_error("bench", "infer", "--cases", "lits_117,nope", "--work", tmp_path)
    assert "unknown cases nope" in line and "full_512x512x200" in line


def test_bench_infer_refuses_a_variant_it_could_not_run(tmp_path):
    # a variant's options are read as /infer reads them: an unknown one would otherwise be ignored, silently
    def error(variant: str) -> str:
        return cli_error("bench", "infer", "--variant", variant, "--work", tmp_path)

    assert "no_such is no /infer option" in error("app:no_such=1")
    assert "between -100 and 100" in error("app:intensity_tta_hu=500")
    assert "starts with 'app:'" in error("baseline:cascade=false")


def test_bench_train_refuses_a_bad_budget(tmp_path):
    assert "--minutes" in cli_error("bench", "train", "--minutes", "0", "--work", tmp_path)


def test_bench_startup_refuses_a_study_that_is_not_in_sample_data(tmp_path):
    # the benchmark itself starts two servers for minutes: docs/reliability.md; tests/test_server_responsive.py
    # checks the same behaviour on one server
    error = cli_error("bench", "startup", "--studies", "phantom_9999_000", "--out", tmp_path)
    assert "--studies" in error and "phantom_9999_000" in error


def test_bench_accuracy_measures_lesions_and_draws_them(tmp_path):
    """Two sample studies through /infer's task: Dice, the global tumour Dice and lesions found by size and kind
    (the phantoms' JSON says which kind each is), a picture of the labels against the true tumours, and a chart
    of every true lesion."""
    import json
    import shutil

    from .conftest import ROOT

    studies = tmp_path / "studies"
    (studies / "truth").mkdir(parents=True)
    for sid in ("phantom_2026_004", "phantom_2026_005"):
        for suffix in (".nii.gz", ".json"):
            shutil.copy(ROOT / "sample-data" / f"{sid}{suffix}", studies / f"{sid}{suffix}")
        shutil.copy(ROOT / "sample-data" / "truth" / f"{sid}.nii.gz", studies / "truth" / f"{sid}.nii.gz")
    proc = run_cli("bench", "accuracy", "--studies", studies, "--picture", tmp_path / "labels.png",
                   "--lesion-chart", tmp_path / "lesions.png", "--conf", "spacing", "3",
                   # both second passes' gates out of reach: neither runs, and each study's first-pass median is kept
                   "--conf", "intensity_tta_hu", "-20", "--conf", "intensity_tta_liver_hu", "1000",
                   "--conf", "dark_liver_hu", "-1000")
    assert proc.returncode == 0, proc.stderr[-1500:]
    result = json.loads(proc.stdout)
    mean = result["mean"]
    assert mean["cases"] == 2 and 0 <= mean["liver_dice"] <= 1 and "tumour_global_dice" in mean
    true = sum(v["of"] for v in mean["lesions_found"].values())
    assert true > 0 and sum(v["of"] for v in mean["lesions_found_by_kind"].values()) == true
    assert "unknown" not in mean["lesions_found_by_kind"]
    # each true lesion listed; the visible ones are those of 10 mm or more measured 10 HU or more off the liver
    listed = [d for case in result["cases"] for d in case["lesions"]["true_lesion_list"]]
    assert len(listed) == true
    visible = [d for d in listed if d["diameter_mm"] >= 10 and abs(d.get("contrast_hu") or 0) >= 10]
    assert mean["visible_10mm"] == {"found": sum(d["found"] for d in visible), "of": len(visible),
                                    "matched": sum(d["iou"] >= 0.5 for d in visible)}
    assert len(visible) > 0
    # the liver's mL added and missed agree with its Dice: 2 (T - missed) / (2 T - missed + added)
    for case in result["cases"]:
        truth = nib.load(studies / "truth" / f"{case['id']}.nii.gz")
        t = float((np.asanyarray(truth.dataobj) > 0).sum() * abs(np.linalg.det(truth.affine[:3, :3])) / 1000)
        added, missed = case["liver_added_ml"], case["liver_missed_ml"]
        assert abs(2 * (t - missed) / (2 * t - missed + added) - case["whole_liver_dice"]) < 1e-3
        # the second pass's decision kept: the sample studies' livers, enhanced or not, lie within the window
        assert case["second_pass"]["ran"] is False and -21 < case["second_pass"]["liver_median_hu"] < 189
    assert (tmp_path / "labels.png").stat().st_size > 20_000 and (tmp_path / "lesions.png").stat().st_size > 20_000
