"""Phantoms: determinism, geometry in every orientation, tissue HU, phases, tumours, presets, the CLI."""

from __future__ import annotations

import functools
import json
import pickle

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from lib.data.phantoms import generate_study
from lib.data.phantoms.acquisition import ORIENTATIONS, PRESETS, Acquisition, Grid, grid_for
from lib.data.phantoms.canvas import Canvas
from lib.data.phantoms.render import NoiseStream
from lib.data.phantoms.study import plan
from lib.data.phantoms.tissues import HU_RANGES, PHASES, Tissue

from .conftest import cli, cli_error


def canonical(img: nib.Nifti1Image) -> tuple[np.ndarray, np.ndarray]:
    c = nib.as_closest_canonical(img)
    return np.asanyarray(c.dataobj), c.affine


def test_same_seed_same_study_other_seed_other_study():
    a, b = generate_study(11, 0, "small"), generate_study(11, 0, "small")
    assert np.array_equal(a.image.get_fdata(), b.image.get_fdata())
    assert np.array_equal(np.asanyarray(a.label.dataobj), np.asanyarray(b.label.dataobj))
    assert a.params == b.params
    c = generate_study(12, 0, "small")
    assert c.params["liver_volume_ml"] != a.params["liver_volume_ml"]


@functools.cache
def _ras_reference():
    return generate_study(5, 1, "small", orientation="RAS")


@pytest.mark.parametrize("code", list(ORIENTATIONS))
def test_label_overlays_image_in_every_orientation(code):
    ref = _ras_reference()
    study = generate_study(5, 1, "small", orientation=code)
    assert "".join(nib.aff2axcodes(study.image.affine)) == code
    assert np.allclose(study.label.affine, study.image.affine) and study.label.shape == study.image.shape
    image, affine = canonical(study.image)
    label, label_affine = canonical(study.label)
    ref_image, ref_affine = canonical(ref.image)
    # the same voxels at the same world positions, whatever order they are stored in
    assert np.allclose(affine, ref_affine) and np.allclose(label_affine, ref_affine)
    assert np.array_equal(image, ref_image)
    assert np.array_equal(label, np.asanyarray(nib.as_closest_canonical(ref.label).dataobj))
    # the liver label covers liver-like CT numbers, and lies in the patient's right upper abdomen
    hu_liver = np.median(image[label == 1])
    assert 30 < hu_liver < 140
    centroid_world = affine @ np.r_[ndimage.center_of_mass(label == 1), 1]
    body_world = affine @ np.r_[ndimage.center_of_mass(image > -300), 1]
    assert centroid_world[0] > body_world[0]  # RAS: positive x is the patient's right


def test_tissue_hu_ranges_and_partial_volume():
    study = generate_study(3, 2, "medium", with_tissue=True, phase="portal_venous")
    image = np.asanyarray(study.image.dataobj).astype(float)
    tissue = np.asanyarray(study.tissue.dataobj)
    noise = study.params["noise_sd_hu"]

    def interior_median(t):  # away from partial volume at the borders
        m = ndimage.binary_erosion(tissue == t, iterations=1)
        assert m.sum() > 20, t
        return float(np.median(image[m]))

    assert interior_median(Tissue.AIR) < -950
    assert -120 < interior_median(Tissue.FAT) < -80
    assert -900 < interior_median(Tissue.LUNG) < -780
    assert 35 < interior_median(Tissue.MUSCLE) < 75
    lo, hi = HU_RANGES[Tissue.LIVER][PHASES.index("portal_venous")]
    assert lo - 5 < interior_median(Tissue.LIVER) < hi + 5
    bone = image[tissue == Tissue.CORTICAL_BONE]
    assert 300 < np.percentile(bone, 90) < 1300 and bone.max() <= 3071
    marrow = interior_median(Tissue.MARROW)
    assert 100 < marrow < 400
    # noise is there, at the stated level, inside a homogeneous organ
    liver_core = ndimage.binary_erosion(tissue == Tissue.LIVER, iterations=2)
    assert 0.6 * noise < image[liver_core].std() < 2.0 * noise


def test_contrast_phases_change_liver_vessels_and_tumours():
    med = {}
    for phase in PHASES:
        s = generate_study(4, 3, "small", with_tissue=True, phase=phase)
        image = np.asanyarray(s.image.dataobj).astype(float)
        tissue = np.asanyarray(s.tissue.dataobj)
        med[phase] = {t: float(np.median(image[tissue == t])) for t in (Tissue.LIVER, Tissue.AORTA)}
        med[phase]["params"] = s.params
    nc, art, pv = (med[p] for p in PHASES)
    assert nc[Tissue.LIVER] < art[Tissue.LIVER] < pv[Tissue.LIVER]
    assert pv[Tissue.LIVER] - nc[Tissue.LIVER] > 30
    assert nc[Tissue.AORTA] < 60 < 130 < pv[Tissue.AORTA] < art[Tissue.AORTA]
    # the same anatomy in each phase
    assert nc["params"]["tumours"] and [t["centre_mm"] for t in nc["params"]["tumours"]] == [
        t["centre_mm"] for t in pv["params"]["tumours"]]
    kinds = [t["kind"] for t in pv["params"]["tumours"]]
    for i, kind in enumerate(kinds):  # hypervascular: bright in the arterial phase, washed out in portal venous
        if kind == "hypervascular":
            assert art["params"]["tumours"][i]["contrast_hu"] > 0 > pv["params"]["tumours"][i]["contrast_hu"]


def test_tumour_and_scan_variety_across_studies():
    tumours, grids_full, grids_small, phases, codes = [], [], [], set(), set()
    for i in range(60):
        anatomy, acq, _ = plan(21, i)
        tumours += [t.describe() | {"study": i} for t in anatomy.tumours]
        grids_full.append(grid_for(acq, "full"))
        grids_small.append(grid_for(acq, "small"))
        phases.add(acq.phase)
        codes.add(acq.orientation)
    counts = np.bincount([t["study"] for t in tumours], minlength=60)
    assert (counts == 0).any() and counts.max() >= 10
    d = np.array([t["diameter_mm"] for t in tumours])
    assert d.min() < 5 and d.max() > 50 and d.max() <= 80 and d.min() >= 3
    assert {t["appearance"] for t in tumours} == {"hypodense", "hyperdense"}
    assert any(t["lobulated"] for t in tumours) and not all(t["lobulated"] for t in tumours)
    assert any(t["rim_mm"] > 0 for t in tumours) and any(t["necrosis"] > 0 for t in tumours)
    assert any(t["surface"] for t in tumours)
    assert any(t["kind"] == "subtle" for t in tumours)
    assert phases == set(PHASES) and len(codes) >= 5
    inplane = [g.spacing[0] for g in grids_full]
    slices = [g.spacing[2] for g in grids_full]
    assert 0.6 <= min(inplane) and max(inplane) <= 0.95 and max(inplane) - min(inplane) > 0.15
    assert 0.7 <= min(slices) and max(slices) <= 5.0 and min(slices) < 1.0 and max(slices) >= 4.0
    assert all(g.shape[:2] == (512, 512) and 60 <= g.shape[2] <= 400 for g in grids_full)
    assert all(np.prod(g.shape) < 1_000_000 for g in grids_small)


def test_subtle_tumours_are_below_cnr_1_5_in_the_full_scan():
    for i in range(40):
        anatomy, acq, _ = plan(21, i)
        sd = acq.noise_sd(acq.slice_mm)
        for t in anatomy.tumours:
            if t.kind == "subtle":
                assert abs(t.contrast_hu) / sd < 1.5


def test_liver_shape_varies_and_is_not_an_ellipsoid():
    masks = []
    for i in range(3):
        s = generate_study(8, i, "small", orientation="RAS")
        label = np.asanyarray(s.label.dataobj) > 0
        zooms = s.label.header.get_zooms()
        pts = np.argwhere(label) * zooms
        centred = pts - pts.mean(0)
        evals, evecs = np.linalg.eigh(np.cov(centred.T))
        axes = np.sqrt(5 * evals)  # semi-axes of the ellipsoid with the same second moments
        proj = centred @ evecs / axes
        inside_fit = (proj**2).sum(1) <= 1
        ellipsoid_volume = 4 / 3 * np.pi * np.prod(axes)
        overlap = inside_fit.sum() * np.prod(zooms)
        iou = overlap / (ellipsoid_volume + label.sum() * np.prod(zooms) - overlap)
        assert iou < 0.85, iou
        masks.append(s.params["liver_volume_ml"])
    assert len(set(np.round(masks))) == 3


def test_small_and_full_presets_hold_the_same_anatomy():
    seed, index = 21, next(i for i in range(40) if plan(21, i)[1].n_slices <= 80)
    small = generate_study(seed, index, "small")
    full = generate_study(seed, index, "full")
    anatomy = lambda t: {k: v for k, v in t.items() if k not in ("volume_ml", "cnr")}  # noqa: E731 (measured)
    assert [anatomy(t) for t in small.params["tumours"]] == [anatomy(t) for t in full.params["tumours"]]
    assert small.params["phase"] == full.params["phase"]
    assert abs(small.params["liver_volume_ml"] - full.params["liver_volume_ml"]) < 0.03 * full.params[
        "liver_volume_ml"]
    # the small label, looked up at the full grid's voxel centres, overlaps the full label
    s_label = np.asanyarray(small.label.dataobj)
    f_label = np.asanyarray(full.label.dataobj)
    ijk = np.argwhere(np.ones(f_label.shape, bool)[::4, ::4, :]) * [4, 4, 1]
    world = nib.affines.apply_affine(full.label.affine, ijk)
    s_ijk = np.rint(nib.affines.apply_affine(np.linalg.inv(small.label.affine), world)).astype(int)
    s_ijk = np.clip(s_ijk, 0, np.array(s_label.shape) - 1)
    a = s_label[tuple(s_ijk.T)] == 1
    b = f_label[tuple(ijk.T)] == 1
    assert 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.9
    assert sorted(full.image.shape)[-2:] == [512, 512] and np.prod(small.image.shape) < 1_000_000


def test_the_pelvis_lies_below_the_iliac_crests_and_leaves_the_abdomen_as_it_was(monkeypatch):
    """Bone and muscle of the iliac wings, the sacrum, the bladder's urine behind its wall: all below the crests,
    drawn from their own random stream, so that every study above them is what it was before the pelvis."""
    from lib.data.phantoms import anatomy as anatomy_module
    from lib.data.phantoms import study as study_module

    anatomy, _, _ = plan(1000, 18)
    monkeypatch.setattr(study_module, "PELVIS", 6)  # another stream for the pelvis: nothing else changes
    other, _, _ = plan(1000, 18)
    monkeypatch.undo()
    assert pickle.dumps(other.pelvis) != pickle.dumps(anatomy.pelvis)
    above = [pickle.dumps((a.body, a.liver, a.organs, a.tumours, a.texture)) for a in (anatomy, other)]
    assert above[0] == above[1]

    p = anatomy.pelvis
    xs, ys = np.arange(-200, 200, 2.0), np.arange(-170, 190, 2.0)

    def painted(zs, pelvis=True):
        cv = Canvas(xs, ys, zs)
        with monkeypatch.context() as m:
            if not pelvis:
                m.setattr(anatomy_module, "paint_pelvic_frame", lambda *args: None)
                m.setattr(anatomy_module, "paint_rectum", lambda *args: None)
            anatomy.paint(cv)
        return cv.tissue

    above = np.arange(p.crest_z + 0.5, p.crest_z + 80, 3.0)
    assert np.array_equal(painted(above), painted(above, pelvis=False))

    level = [p.crest_z - 40]
    wings, before = painted(level), painted(level, pelvis=False)
    bone = np.isin(wings, (Tissue.CORTICAL_BONE, Tissue.MARROW)) & ~np.isin(before, (Tissue.CORTICAL_BONE,
                                                                                      Tissue.MARROW))
    for side in (xs < -55, xs > 55):
        assert bone[side].sum() > 20  # each ilium, from the sacroiliac joint outwards
    assert ((before == Tissue.FAT) & (wings == Tissue.MUSCLE)).sum() > 300  # iliacus and glutei, 12 cm2 and more
    tilted = Canvas([0.0], [anatomy.body.vb_y + 32], [p.promontory_z - 80])
    anatomy.paint(tilted)
    assert tilted.tissue[0, 0, 0] in (Tissue.MARROW, Tissue.CORTICAL_BONE)  # the sacrum, behind the lumbar line
    assert not (painted(np.arange(p.promontory_z - 100, p.promontory_z, 4.0)) == Tissue.DISC).any()

    centre = p.bladder.centre
    bladder = Canvas(centre[0] + np.arange(-80, 81, 1.0), [centre[1]], [centre[2]])
    anatomy.paint(bladder)
    row = bladder.tissue[:, 0, 0]
    assert row[80] == Tissue.FLUID
    inside = np.nonzero(row == Tissue.FLUID)[0]
    assert row[inside.min() - 1] == Tissue.MUSCLE and row[inside.max() + 1] == Tissue.MUSCLE  # the wall
    assert 0.8 * p.bladder.axes[0] < (inside.max() - inside.min()) / 2 + p.bladder_wall < 1.2 * p.bladder.axes[0]


def test_noise_is_spatially_correlated_at_the_stated_level():
    grid = Grid((128, 128, 8), (0.7, 0.7, 1.0), (0, 0, 0), (1, 1, 1), 15.0)
    acq = plan(1, 0)[1]
    acq = Acquisition(**{**acq.__dict__, "grain_mm": 0.8, "noise_rho_z": 0.3})
    n = NoiseStream(np.random.default_rng(0), grid, acq).slab(128, 128, 8)
    assert 13 < n.std() < 17
    lag1 = np.corrcoef(n[:-1].ravel(), n[1:].ravel())[0, 1]
    far = np.corrcoef(n[:-12].ravel(), n[12:].ravel())[0, 1]
    assert lag1 > 0.3 and abs(far) < 0.05


def test_presets_are_known():
    assert set(PRESETS) == {"small", "medium", "full"}
    with pytest.raises(ValueError, match="unknown preset"):
        grid_for(plan(1, 0)[1], "huge")


def test_cli_writes_studies_with_parameters_and_resumes(tmp_path):
    out = tmp_path / "ph"
    proc = cli("phantoms", "--out", out, "--count", "2", "--seed", "7")
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(ln) for ln in proc.stdout.splitlines()]
    assert [ln["id"] for ln in lines] == ["phantom_7_000", "phantom_7_001"]
    for ln in lines:
        image = nib.load(out / f"{ln['id']}.nii.gz")
        label = nib.load(out / "truth" / f"{ln['id']}.nii.gz")
        params = json.loads((out / f"{ln['id']}.json").read_text())
        assert image.shape == label.shape and np.allclose(image.affine, label.affine)
        assert image.get_data_dtype() == np.int16 and set(np.unique(np.asanyarray(label.dataobj))) <= {0, 1, 2}
        assert params["seed"] == 7 and params["tumour_count"] == len(params["tumours"])
        assert abs((np.asanyarray(label.dataobj) == 1).sum() * np.prod(image.header.get_zooms()) / 1000
                   - params["label_liver_ml"]) < 0.01
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.nii.gz")}
    assert cli("phantoms", "--out", out, "--count", "2", "--seed", "7").returncode == 0
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.nii.gz")} == before  # nothing redone
    assert not list(out.rglob(".*"))  # no temporary files left


@pytest.mark.parametrize("args, message", [
    (["--count", "0", "--seed", "1"], "--count"),
    (["--count", "two", "--seed", "1"], "--count"),
    (["--count", "1", "--seed", "-3"], "--seed"),
    (["--count", "1", "--seed", "1", "--preset", "huge"], "--preset"),
    (["--count", "1"], "--seed"),
])
def test_cli_rejects_bad_arguments_without_writing(tmp_path, args, message):
    line = cli_error("phantoms", "--out", tmp_path / "x", *args)
    assert message in line
    assert not (tmp_path / "x").exists()


def test_cli_rejects_a_file_as_output_folder(tmp_path):
    f = tmp_path / "file"
    f.write_text("not a folder")
    assert "is a file" in cli_error("phantoms", "--out", f, "--count", "1", "--seed", "1")
    assert f.read_text() == "not a folder"
