"""`liver-tumor preannotate` over a mixed folder (NIfTI files, two DICOM series in one folder, a series with a missing
slice, a broken study, a stray file), in two processes under torchrun, then again (resumed): labels in each study's
geometry, the report and overview."""

from __future__ import annotations

import csv
import json
import shutil

import matplotlib.pyplot as plt
import nibabel as nib
import numpy as np

from lib.dicom.series import nifti_to_series
from lib.settings import DEMO_CHECKPOINT

from .conftest import ROOT, cli, cli_error, liver_dice_in_world, run_cli

SAMPLE = ROOT / "sample-data"


def test_mixed_folder_sharded_then_resumed(tmp_path):
    studies, out = tmp_path / "studies", tmp_path / "out"
    studies.mkdir()
    # two studies the locator crops (005, whose liver touches the scan's border, costs a whole-volume inference)
    for name in ("phantom_2026_004", "phantom_2026_009"):
        shutil.copy(SAMPLE / f"{name}.nii.gz", studies / f"{name}.nii.gz")
    # two DICOM series mixed in one folder: two studies, told apart by SeriesInstanceUID
    mixed = studies / "dicom" / "mixed"
    mixed.mkdir(parents=True)
    uids = {}
    for name in ("phantom_2026_006", "phantom_2026_007"):
        made = nifti_to_series(SAMPLE / f"{name}.nii.gz", tmp_path / name)
        for f in made.files:
            shutil.move(f, mixed / f"{name}_{f.name}")
        uids[made.series_uid] = name
    # a series with a slice missing: refused, named
    gap = nifti_to_series(SAMPLE / "phantom_2026_008.nii.gz", studies / "dicom" / "gap")
    gap.files[len(gap.files) // 2].unlink()
    (studies / "broken.nii.gz").write_bytes((SAMPLE / "phantom_2026_007.nii.gz").read_bytes()[:5000])
    (studies / "notes.txt").write_text("not a study\n")

    temporary = tmp_path / "tmp"  # the run's own temporary folder: it leaves nothing there
    temporary.mkdir()
    proc = run_cli("preannotate", "--studies", studies, "--out", out, "--device", "cpu", "--processes", "2",
                   "--model", DEMO_CHECKPOINT, env={"TMPDIR": str(temporary)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not list(temporary.glob("preannotate-model-*")) and not (out / "work").exists()
    summary = json.loads(proc.stdout)
    assert summary["studies"] == 6 and summary["ok"] == 4 and summary["failed"] == 2
    assert summary["processes"] == 2 and summary["processed_this_run"] == 6 and summary["studies_per_minute"] > 0
    assert summary["skipped_files"] == ["notes.txt"]
    assert "pre-annotating" in proc.stderr and ("study/s" in proc.stderr or "s/study" in proc.stderr)  # tqdm's rate

    # two ranks, each with its own shard, together all studies once
    ranks = [json.loads((out / "ranks" / f"rank_{r}.json").read_text()) for r in (0, 1)]
    assert sorted(r["rank"] for r in ranks) == [0, 1] and sum(r["studies"] for r in ranks) == 6

    report = json.loads((out / "report.json").read_text())
    rows = {r["id"]: r for r in report["studies"]}
    assert set(rows) == {"phantom_2026_004", "phantom_2026_009", *uids, gap.series_uid, "broken"}
    assert rows["broken"]["status"] == "failed" and "could not be read" in rows["broken"]["error"]
    assert rows[gap.series_uid]["status"] == "failed" and "missing or duplicate slices" in rows[gap.series_uid]["error"]
    assert not (out / "labels" / "broken.nii.gz").exists()
    # each label lies on its study's grid: the DICOM series' is the grid of the study it was made from
    for sid, source in (("phantom_2026_004", "phantom_2026_004"), ("phantom_2026_009", "phantom_2026_009"),
                        *uids.items()):
        row = rows[sid]
        assert row["status"] == "ok", row
        label, image = nib.load(out / "labels" / f"{sid}.nii.gz"), nib.load(SAMPLE / f"{source}.nii.gz")
        if row["kind"] == "nifti":  # exactly the study's grid
            assert label.shape == image.shape and np.allclose(label.affine, image.affine, atol=1e-3)
        assert liver_dice_in_world(out / "labels" / f"{sid}.nii.gz", SAMPLE / "truth" / f"{source}.nii.gz") > 0.7
        data = np.asanyarray(label.dataobj)
        voxel_ml = abs(np.linalg.det(label.affine[:3, :3])) / 1000
        assert abs(row["liver_volume_ml"] - (data == 1).sum() * voxel_ml) < 0.01 * row["liver_volume_ml"] + 0.1
        assert row["tumour_count"] >= 0 and (row["tumour_count"] == 0) == (row["largest_lesion_diameter_mm"] == 0)
        assert 0 <= row["uncertainty"] <= 1
    with open(out / "report.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 6 and {r["id"] for r in table} == set(rows)
    assert {"liver_volume_ml", "tumour_count", "tumour_volume_ml", "largest_lesion_diameter_mm",
            "uncertainty"} <= set(table[0])
    overview = plt.imread(str(out / "overview.png"))
    thumb = plt.imread(str(out / "thumbs" / "phantom_2026_004.png"))
    assert overview.shape[0] == 4 * thumb.shape[0]  # one row per labelled study

    # again, one process (this one): the done studies are skipped, the failed ones are tried again and fail again
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "labels").iterdir()}
    again = cli("preannotate", "--studies", studies, "--out", out, "--device", "cpu", "--model", DEMO_CHECKPOINT)
    assert again.returncode == 0, again.stderr[-3000:]
    summary = json.loads(again.stdout)
    assert summary["processed_this_run"] == 2 and summary["ok"] == 4 and summary["failed"] == 2
    assert {p.name: p.stat().st_mtime_ns for p in (out / "labels").iterdir()} == mtimes


def test_bad_arguments_are_one_line_errors(tmp_path):
    assert "no such folder" in cli_error("preannotate", "--studies", tmp_path / "absent", "--out",
                                         tmp_path / "out")
    (tmp_path / "empty").mkdir()
    assert "no NIfTI files or DICOM series" in cli_error("preannotate", "--studies", tmp_path / "empty", "--out",
                                                         tmp_path / "out", "--device", "cpu")
    assert "--model" in cli_error("preannotate", "--studies", SAMPLE, "--out", tmp_path / "out",
                                  "--model", tmp_path / "none.pt")


def test_who_pre_annotates():
    from lib.preannotate.choice import OWN, PATIENTS, choose

    both = [OWN, PATIENTS]
    compared = {"scores": {OWN: 0.81, PATIENTS: 0.74}, "studies": ["a", "b"]}
    assert choose(both, 2, 3, compared)["model"] == PATIENTS  # too few final labels yet
    assert "fewer than 3" in choose(both, 2, 3, compared)["why"]
    assert choose(both, 5, 3, {})["model"] == PATIENTS  # not compared yet
    won = choose(both, 5, 3, compared)
    assert won["model"] == OWN and "0.81" in won["why"] and won["scores"] == compared["scores"]
    assert choose(both, 5, 3, {"scores": {OWN: 0.6, PATIENTS: 0.74}})["model"] == PATIENTS
    assert choose([OWN], 0, 3, compared)["model"] == OWN  # the model trained on patients is not converted
    assert choose([PATIENTS], 9, 3, compared)["model"] == PATIENTS  # no own model yet
    assert choose([], 9, 3, {})["model"] is None


def test_a_comparison_segments_again_only_what_changed(tmp_path):
    """After each training run both models segment the run's validation studies; the model trained on patients is
    the same file every time, so a study whose image and final label are unchanged keeps its earlier Dice."""
    import os

    from lib.preannotate.choice import OWN, PATIENTS, compare

    studies = [(sid, SAMPLE / f"{sid}.nii.gz", tmp_path / f"{sid}_final.nii.gz")
               for sid in ("phantom_2026_004", "phantom_2026_005")]
    for sid, _, label in studies:
        shutil.copy(SAMPLE / "truth" / f"{sid}.nii.gz", label)
    calls: dict[str, list[str]] = {OWN: [], PATIENTS: []}

    def model(name: str, liver_only: bool):
        def infer(request):  # a label file, as an InferTask answers: the truth, or its liver without tumours
            calls[name].append(os.path.basename(request["image"]))
            truth = nib.load(SAMPLE / "truth" / os.path.basename(request["image"]))
            data = np.asanyarray(truth.dataobj).copy()
            if liver_only:
                data[data == 2] = 1
            out = tmp_path / f"{name}_{len(calls[name])}.nii.gz"
            nib.save(nib.Nifti1Image(data, truth.affine), out)
            return str(out), {}
        return infer

    versions = {OWN: tmp_path / "own.pt", PATIENTS: tmp_path / "patients.pt"}
    for path in versions.values():
        path.write_bytes(b"weights")
    tasks = {OWN: model(OWN, False), PATIENTS: model(PATIENTS, True)}
    first = compare(tasks, studies, {k: str(v) for k, v in versions.items()}, tmp_path)
    assert first["scores"][OWN] == 1.0 and first["scores"][PATIENTS] < 1.0
    assert len(calls[OWN]) == len(calls[PATIENTS]) == 2 and first["reused"] == {OWN: [], PATIENTS: []}

    os.utime(versions[OWN], ns=(1, 1))  # the next run published a new model; one final label was corrected
    corrected = nib.load(studies[1][2])
    data = np.asanyarray(corrected.dataobj).copy()
    data[data == 2] = 1  # its lesions were not lesions
    nib.save(nib.Nifti1Image(data, corrected.affine), studies[1][2])
    second = compare(tasks, studies, {k: str(v) for k, v in versions.items()}, tmp_path)
    assert calls[OWN][2:] == ["phantom_2026_004.nii.gz", "phantom_2026_005.nii.gz"]
    assert calls[PATIENTS][2:] == ["phantom_2026_005.nii.gz"]
    assert second["reused"] == {OWN: [], PATIENTS: ["phantom_2026_004"]}
    assert second["cases"][PATIENTS][0] == first["cases"][PATIENTS][0]
    assert second["scores"][PATIENTS] != first["scores"][PATIENTS]  # measured against the new label


def test_the_model_name_and_a_checkpoint_are_not_mixed(tmp_path):
    line = cli_error("preannotate", "--studies", SAMPLE, "--out", tmp_path / "out", "--model",
                     DEMO_CHECKPOINT, "--model-name", "pyliverlesionseg")
    assert "--model-name" in line
