"""scripts/device-check's dry run, as CI runs it: every step of the GPU check on the CPU at tiny sizes, within its
budget, with one JSON and one PNG. It also stands for the benchmarks it runs (bench infer on LiTS case 117, bench
train on two tiny phantoms): their numbers are checked here."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import torch

from lib.model.checkpoint import load_network, read_card
from lib.settings import DEMO_CHECKPOINT

from .conftest import ROOT


def test_the_dry_run_runs_every_step_from_a_given_checkpoint_and_reports(tmp_path):
    """--start: a later GPU session trains on from an earlier one's weights (carried there) and is measured against
    them, not the shipped model; last.pt, the last epoch's averaged weights, comes back whether or not validation
    published anything; --conf sets the training's options over the GPU stage's and the dry run's. One dry run checks
    all of it with every step (each step's processes load torch and MONAI: a second run cost CI a minute)."""
    start = tmp_path / "start.pt"  # the shipped weights under another name, as a carried checkpoint would be
    for suffix in (".pt", ".json"):
        shutil.copy(DEMO_CHECKPOINT.with_suffix(suffix), start.with_suffix(suffix))
    out = tmp_path / "out"
    proc = subprocess.run([str(ROOT / "scripts" / "device-check"), "--dry-run", "--out", str(out), "--start",
                           str(start), "--conf", "tumour_weight", "5", "--conf", "crop_size", "48", "--conf",
                           "spacing", "5"], cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "device-check.json").read_text())
    steps = {s["name"]: s for s in report["steps"]}
    if steps["bench_infer"]["status"] != "passed" and "package index" in steps["bench_infer"]["output_tail"]:
        pytest.skip("the package index is unreachable here: LiTS case 117 comes from PyPI")
    assert list(steps) == ["environment", "tests", "bench_infer", "bench_train", "phantoms", "training", "evaluation"]
    assert {n: s["status"] for n, s in steps.items()} == dict.fromkeys(steps, "passed"), {
        n: s["output_tail"][-1500:] for n, s in steps.items() if s["status"] != "passed"}
    assert all(s["seconds"] <= s["limit_s"] + 15 for s in steps.values())
    assert report["seconds"] <= report["plan"]["budget_s"]
    assert steps["environment"]["result"]["imports_failed"] == {}
    # the tests marked cuda ran, on the CPU (bf16 training, the same path as fp16 there, left out)
    assert report["summary"]["tests"] == {"tests": 4, "failures": 0, "errors": 0, "skipped": 0}

    # bench infer, both pipelines on LiTS case 117: the numbers it reports, and the real liver found by both
    case = steps["bench_infer"]["result"]["cases"]["lits_117"]
    assert case["shape"] == [128, 128, 128]
    for pipeline in ("baseline", "app"):
        r = case[pipeline]
        assert r["median_seconds"] > 0 and r["peak_rss_mb"] > 100 and r["windows"] >= 1
        assert sum(v for k, v in r["stages"].items() if "." not in k) <= r["median_seconds"] * 1.05
    assert case["baseline"]["stages"]["infer"] > 0 and case["speedup"] > 0
    assert case["dice"]["baseline_vs_truth"]["liver"] > 0.5 and case["dice"]["app_vs_truth"]["liver"] > 0.5
    # the two pipelines agree (0.87 measured with the tumour-finding model: they differ mostly where liver meets
    # tumour, and the cascade changes what the network sees around the liver); a misplaced label scores far lower
    assert case["dice"]["app_vs_baseline"]["liver"] > 0.8
    assert "lits_117" in steps["bench_infer"]["output_tail"]  # its table

    # bench train, both trainers on 2 tiny phantoms for a few seconds each
    train = steps["bench_train"]["result"]
    for role in ("baseline", "app"):
        r = train["trainers"][role]
        assert r["epochs"] and r["samples"] == 2 * 4 * len(r["epochs"])  # 2 studies x 4 crops per epoch
        assert r["samples_per_s"] > 0 and r["peak_rss_mb"] > 100
        assert all(0 <= e["liver_dice"] <= 1 for e in r["epochs"])
    assert train["ratios"]["throughput"] > 0
    assert "| baseline |" in steps["bench_train"]["output_tail"] and "| app |" in steps["bench_train"]["output_tail"]

    # the training went on from the start's weights, with the options given over the GPU stage's (tumour weight 3)
    # and the dry run's (crops of 32)
    history = steps["training"]["result"]["history"]
    assert history and all(0 <= h["val_liver_dice"] <= 1 for h in history)
    log = (out / "training.log").read_text()
    assert f"Restored all variables from {start}" in log and "Epoch[1] Complete" in log
    assert "'tumour_weight': 5.0" in log and "'crop_size': 48" in log and "'tumour_weight': 3.0" not in log
    # last.pt comes back, trained, and its card gives the spacing --conf trained it at, not the dry run's 4 mm, so
    # /infer reads it right
    last, first = load_network(out / "last.pt"), load_network(start)
    assert not all(torch.equal(a, b) for a, b in zip(last.state_dict().values(), first.state_dict().values()))
    assert json.loads((out / "last.json").read_text())["epoch"] == 1
    assert read_card(out / "last.pt")["spacing_mm"] == [5.0] * 3
    # measured against the start, not the shipped model (here the same weights, under the start's name); published
    # only if its epoch beat the start's own validation (here it did: 0.147 against 0.112), then it is that last
    # epoch's weights
    evaluation = steps["evaluation"]["result"]
    assert set(evaluation) == {"trained", "start"} and report["summary"]["heldout"] == evaluation
    assert 0 <= evaluation["start"]["liver_dice"] <= 1, evaluation
    if steps["training"]["result"]["published_epoch"] == 1:
        published = load_network(out / "liver_tumor.pt")
        assert all(torch.equal(a, b) for a, b in zip(last.state_dict().values(), published.state_dict().values()))
        assert 0 <= evaluation["trained"]["liver_dice"] <= 1, evaluation
    else:
        assert not (out / "liver_tumor.pt").exists() and "no checkpoint" in evaluation["trained"]["error"]
    assert (out / "device-check.png").stat().st_size > 10_000
    assert not (out / "work").exists()


def test_without_a_start_the_evaluation_measures_the_shipped_model(tmp_path):
    """The evaluation step's default (the dry run above gives it a start): the shipped model is measured beside what
    the training published, here nothing, which is reported as such. At the dry run's 4 mm on one small held-out
    phantom the shipped model's liver Dice was 0.74; a model that is not the shipped one, or none, scores near 0."""
    from lib.bench.device_check import evaluate_models
    from lib.data.phantoms.batch import make_phantoms

    make_phantoms(tmp_path / "heldout", 1, 2000, "small", progress=False)
    out = tmp_path / "evaluation.json"
    evaluate_models(str(tmp_path / "model"), str(tmp_path / "heldout"), str(out),
                    json.dumps({"spacing": "4", "roi_size": "64", "crop_size": "32"}))
    results = json.loads(out.read_text())
    assert set(results) == {"trained", "shipped"} and "no checkpoint" in results["trained"]["error"]
    assert results["shipped"]["liver_cases"] == 1 and results["shipped"]["liver_dice"] > 0.5, results


def test_monai_labels_wheel_is_repacked_without_its_viewer(tmp_path):
    import zipfile

    from lib.bench.device_wheels import slim

    wheel = tmp_path / "monailabel-0.8.5-py3-none-any.whl"
    files = {"monailabel/app.py": b"app", "monailabel/endpoints/static/ohif/app.bundle.js": b"x" * 1000,
             "monailabel/endpoints/static/favicon.ico": b"ico", "monailabel-0.8.5.data/data/plugins/a.png": b"png",
             "monailabel-0.8.5.dist-info/METADATA": b"Name: monailabel", "monailabel-0.8.5.dist-info/RECORD": b"old"}
    with zipfile.ZipFile(wheel, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    slim(wheel)
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        record = z.read("monailabel-0.8.5.dist-info/RECORD").decode().splitlines()
    assert names == {"monailabel/app.py", "monailabel/endpoints/static/favicon.ico",
                     "monailabel-0.8.5.dist-info/METADATA", "monailabel-0.8.5.dist-info/RECORD"}
    assert sorted(line.split(",")[0] for line in record) == sorted(names)  # every file kept, hashed, and RECORD
    assert all(line.split(",")[1].startswith("sha256=") for line in record if not line.endswith(",,"))


def test_only_the_chosen_steps_run_and_the_others_say_so(tmp_path):
    from lib.bench.device_check import STEP_NAMES, Plan, run

    with pytest.raises(ValueError, match="unknown steps bench"):
        Plan.make(True, only=("bench",))
    report = run(Plan.make(True, only=("environment",)), tmp_path, progress=lambda message: None)
    statuses = {s["name"]: s["status"] for s in report["steps"]}
    assert statuses == {"environment": "passed"} | {n: "not run: not chosen" for n in STEP_NAMES[1:]}
    assert json.loads((tmp_path / "device-check.json").read_text())["summary"]["statuses"] == statuses
    assert (tmp_path / "device-check.png").exists() and not (tmp_path / "liver_tumor.pt").exists()


def test_a_start_or_an_option_that_cannot_be_used_is_refused_before_any_step(tmp_path, capsys):
    from lib.cli.main import main

    assert main(["device-check", "--dry-run", "--start", str(tmp_path / "none.pt")]) == 2
    assert "no such checkpoint" in capsys.readouterr().err
    assert main(["device-check", "--dry-run", "--conf", "crop_sise", "128"]) == 2
    assert "crop_sise: not an option" in capsys.readouterr().err
    assert main(["device-check", "--dry-run", "--conf", "crop_size", "0"]) == 2
    assert "crop_size" in capsys.readouterr().err
