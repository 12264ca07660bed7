"""Real CT fixtures: LiTS case 117 through its PyPI wheel, and the studies of ../shared/data."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import mrcfile
import nibabel as nib
import nrrd
import numpy as np
import pytest
from scipy import ndimage

from lib.data.fixtures import (
    LITS_MEMBERS,
    LITS_REQUIREMENT,
    LITS_WHEEL,
    SHARED_ENV,
    lits_fixture,
    real_ct_fixtures,
    shared_fixtures,
)
from lib.data.phantoms.study import plan
from lib.data.phantoms.tissues import HU_RANGES, Tissue

from .conftest import cli_error, run_cli


def standin_wheel(folder: Path, rng: np.random.Generator) -> tuple[Path, np.ndarray, np.ndarray]:
    """A wheel with the real one's name and MRC members, holding small known arrays."""
    folder.mkdir(parents=True, exist_ok=True)
    image = rng.normal(50, 100, (6, 7, 8)).astype(np.float32)
    label = rng.integers(0, 3, (6, 7, 8)).astype(np.uint16)
    wheel = folder / LITS_WHEEL
    with zipfile.ZipFile(wheel, "w") as zf:
        for member, data in zip(LITS_MEMBERS, (image, label)):
            tmp = folder / Path(member).name
            with mrcfile.new(tmp, overwrite=True) as mrc:
                mrc.set_data(data)
            zf.write(tmp, member)
            tmp.unlink()
        info = "liver_ct_segmentation_package-1.6.0.dist-info"
        zf.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: liver-ct-segmentation-package\nVersion: 1.6.0\n")
        zf.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py2.py3-none-any\n")
        zf.writestr(f"{info}/RECORD", "")
    return wheel, image, label


def test_lits_round_trip_through_a_local_index(tmp_path):
    wheel, image, label = standin_wheel(tmp_path / "index", np.random.default_rng(0))
    out = tmp_path / "fixtures"
    proc = run_cli("fixtures", "--out", out, "--cache", tmp_path / "cache", "--find-links", wheel.parent,
                   env={"LIVER_TUMOR_SHARED_DATA": str(tmp_path / "absent")})
    assert proc.returncode == 0, proc.stderr
    assert "skipped the shared real studies" in proc.stderr
    assert (tmp_path / "cache" / LITS_WHEEL).exists()  # cached: a second run needs no index
    img, lab = nib.load(out / "lits_117.nii.gz"), nib.load(out / "truth" / "lits_117.nii.gz")
    assert np.array_equal(np.asanyarray(img.dataobj), image)
    assert np.array_equal(np.asanyarray(lab.dataobj), label)
    assert np.allclose(img.affine, lab.affine) and nib.aff2axcodes(img.affine) == ("L", "P", "S")
    assert img.header.get_zooms() == (1.5, 1.5, 1.5)
    shutil.rmtree(wheel.parent)
    again = run_cli("fixtures", "--out", out, "--cache", tmp_path / "cache", "--find-links", wheel.parent,
                    env={"LIVER_TUMOR_SHARED_DATA": str(tmp_path / "absent")})
    assert again.returncode == 0, again.stderr


def test_unreachable_index_is_one_clear_line(tmp_path):
    line = cli_error("fixtures", "--out", tmp_path / "f", "--cache", tmp_path / "c",
                     "--find-links", tmp_path / "nowhere")
    assert "could not download liver-ct-segmentation-package==1.6.0" in line
    assert not (tmp_path / "f").exists()


def test_a_corrupt_wheel_is_named(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / LITS_WHEEL).write_bytes(b"not a zip")
    line = cli_error("fixtures", "--out", tmp_path / "f", "--cache", tmp_path / "c")
    assert LITS_WHEEL in line


@pytest.fixture(scope="module")
def real_lits_wheel(tmp_path_factory) -> Path:
    """The real wheel from the package index (PyPI is reachable on our machines and in CI)."""
    dest = tmp_path_factory.mktemp("lits")
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
                           "-d", str(dest), LITS_REQUIREMENT], capture_output=True, text=True, timeout=300)
    if proc.returncode:
        pytest.skip(f"the package index is unreachable here: {proc.stderr.strip().splitlines()[-1:]}")
    return dest / LITS_WHEEL


def test_real_lits_case_117(real_lits_wheel):
    f = lits_fixture(real_lits_wheel)
    image, label = np.asanyarray(f.image.dataobj), np.asanyarray(f.label.dataobj)
    assert image.shape == (128, 128, 128)
    assert np.bincount(label.ravel()).tolist() == [1481801, 485268, 130083]
    liver, tumour = np.median(image[label == 1]), np.median(image[label == 2])
    assert 90 < liver < 140 and tumour < liver - 30  # portal venous liver, hypodense tumours
    # the phantoms' portal venous liver and hypovascular tumours cover what this real case shows
    lo, hi = HU_RANGES[Tissue.LIVER][2]
    assert lo <= liver <= hi


def test_real_lits_case_117_lies_in_patient_coordinates_as_anatomy_has_it(real_lits_wheel):
    """In RAS world coordinates: the spine is behind the liver and to its left (the liver lies right of the
    midline), and the vertebral column runs from head to foot. (Read as inferior, posterior, right, the case had
    its column running from side to side.)"""
    f = lits_fixture(real_lits_wheel)
    image, label = np.asanyarray(f.image.dataobj), np.asanyarray(f.label.dataobj)

    def world(mask: np.ndarray) -> np.ndarray:  # (3, voxels) in RAS millimetres
        return (f.image.affine @ np.c_[np.argwhere(mask), np.ones(int(mask.sum()))].T)[:3]

    components, _ = ndimage.label(image > 400)
    spine = world(components == np.argmax(np.bincount(components.ravel())[1:]) + 1)  # the vertebrae and ribs
    liver = world(label > 0).mean(1)
    assert spine.mean(1)[1] < liver[1] - 40  # posterior: y grows towards the front
    assert spine.mean(1)[0] < liver[0] - 40  # the liver is to the patient's right of the spine: x grows to the right
    extent = spine.max(1) - spine.min(1)
    assert extent[2] > 1.2 * max(extent[0], extent[1])  # the column runs along z, head to foot


def test_shared_real_studies(shared_data, tmp_path):
    fixtures = {f.id: f for f in shared_fixtures(shared_data)}
    assert set(fixtures) == {"totalseg_ct", "totalseg_dicom_slab", "dcmqi_liver_3slice"}
    for f in fixtures.values():
        image, label = np.asanyarray(f.image.dataobj).astype(float), np.asanyarray(f.label.dataobj)
        assert f.image.shape == f.label.shape and np.allclose(f.image.affine, f.label.affine)
        # a label that overlays its image covers liver-like CT numbers; a misplaced one would not
        assert 30 < np.median(image[label == 1]) < 160, f.id
    slab = fixtures["totalseg_dicom_slab"]
    assert slab.image.shape == (512, 512, 20) and np.allclose(slab.image.header.get_zooms(), (0.9765625, 0.9765625, 2))
    # the DICOM SEG's liver is voxel for voxel the NRRD mask that dcmqi made it from
    mask, header = nrrd.read(str(shared_data / "dcmqi-liver-3slice" / "liver_seg.nrrd"))
    assert header["space"] == "left-posterior-superior"
    seg = fixtures["dcmqi_liver_3slice"]
    lps_origin = np.diag([-1, -1, 1]) @ seg.label.affine[:3, 3]
    assert np.allclose(lps_origin, header["space origin"], atol=1e-2)
    assert np.array_equal(np.asanyarray(seg.label.dataobj), mask.astype(np.uint8))


def test_the_real_ct_measured_on_is_lits_117_and_totalsegmentators_ct_where_shared(shared_data, tmp_path,
                                                                                   monkeypatch):
    wheel, image, _ = standin_wheel(tmp_path / "index", np.random.default_rng(1))
    cache = tmp_path / "cache"
    real = real_ct_fixtures(cache, str(wheel.parent))
    assert [f.id for f in real] == ["lits_117", "totalseg_ct"]
    assert np.array_equal(np.asanyarray(real[0].image.dataobj), image)
    assert real[1].image.shape == next(shared_fixtures(shared_data)).image.shape
    monkeypatch.setenv(SHARED_ENV, str(tmp_path / "absent"))
    assert [f.id for f in real_ct_fixtures(cache)] == ["lits_117"]  # the cached wheel; no shared data


def test_phantom_liver_hu_covers_the_real_livers(shared_data):
    """The real livers' CT numbers fall within what the phantoms produce across phases and fatty livers."""
    phantom = [plan(30, i)[2][Tissue.LIVER] for i in range(80)]
    for f in shared_fixtures(shared_data):
        image, label = np.asanyarray(f.image.dataobj).astype(float), np.asanyarray(f.label.dataobj)
        real = np.median(image[label == 1])
        assert min(phantom) <= real <= max(phantom), (f.id, real, min(phantom), max(phantom))
