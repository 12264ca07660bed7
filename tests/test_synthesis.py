"""Tumour synthesis: lesions from the phantoms' lesion model painted into the liver of any CT, on the fly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from scipy import ndimage

from lib.data.phantoms.lesions import CONTRAST, NECROSIS_HU, RIM, SUBTLE_CNR
from lib.data.phantoms.tissues import PHASES
from lib.transforms.synthesis import SynthesizeTumoursd, _centre, _clear, _offsets, noise_sd, paint

SPACING = (1.0, 1.0, 1.0)


def liver_volume(noise: float = 8.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 100 HU liver (an ellipsoid) in 0 HU surroundings, with Gaussian noise."""
    grid = np.indices((90, 80, 60))
    liver = ((grid[0] - 45) / 38) ** 2 + ((grid[1] - 40) / 32) ** 2 + ((grid[2] - 30) / 25) ** 2 <= 1
    hu = np.where(liver, 100.0, 0.0) + np.random.default_rng(seed).normal(0, noise, liver.shape)
    return hu.astype(np.float32), liver


def test_lesions_stay_in_the_liver_and_the_label_is_what_was_painted():
    hu, liver = liver_volume()
    for seed in range(6):
        p = paint(np.random.default_rng(seed), hu, liver, SPACING, 3, (6.0, 30.0))
        assert p.tumour.any() and not (p.tumour & ~liver).any()
        changed = np.abs(p.hu - hu) > 1e-4
        assert not (changed & ~liver).any()  # nothing outside the liver is touched
        assert (changed | ~p.tumour).all()  # every tumour voxel was painted
        assert len(p.lesions) == 3


def test_each_kind_looks_as_the_lesion_model_says_in_its_phase():
    hu, liver = liver_volume(noise=4.0)
    seen = set()
    for seed in range(60):
        p = paint(np.random.default_rng(seed), hu, liver, SPACING, 1, (14.0, 24.0))
        lesion = p.lesions[0]
        look, kind, phase = lesion["look"], lesion["kind"], PHASES.index(lesion["phase"])
        seen.add(kind)
        if kind == "subtle":
            assert SUBTLE_CNR[0] * 3 <= abs(look.contrast_hu) <= SUBTLE_CNR[1] * 5  # from the noise measured
        else:
            lo, hi = CONTRAST[kind][phase]
            assert lo <= look.contrast_hu <= hi
        assert RIM[phase][0] <= look.rim_hu <= RIM[phase][1] and NECROSIS_HU[0] <= look.necrosis_hu <= NECROSIS_HU[1]
        if not look.rim_mm and not look.necrosis and kind != "subtle":  # a plain one: its core is liver + contrast
            core = p.tumour & (np.abs(p.hu - hu - look.contrast_hu) < 3 * look.heterogeneity_hu + 1)
            measured = float(np.mean(p.hu[p.tumour] - hu[p.tumour]))
            assert abs(measured - look.contrast_hu) < 0.35 * abs(look.contrast_hu) + 2, (kind, measured, look)
            assert core.sum() > 0.5 * p.tumour.sum()
    assert seen == {"hypovascular", "hypervascular", "subtle"}


def test_the_noise_of_the_liver_is_measured():
    for noise in (5.0, 15.0):
        hu, liver = liver_volume(noise)
        assert abs(noise_sd(hu, liver) - noise) < 0.1 * noise


def test_the_transform_is_random_per_crop_and_repeatable_by_seed():
    hu, liver = liver_volume()
    image = MetaTensor(torch.from_numpy(np.clip((hu + 21) / 210, 0, 1))[None], affine=torch.eye(4))
    label = MetaTensor(torch.from_numpy(liver.astype(np.uint8))[None], affine=torch.eye(4))
    label[0, 40:44, 40:44, 30:34] = 2  # a tumour already there stays
    data = {"image": image, "label": label}

    def run(seed: int):
        t = SynthesizeTumoursd(prob=1.0, lesions=(2, 2), size_mm=(8.0, 20.0))
        t.set_random_state(seed)
        return t(dict(data))

    a, b, c = run(1), run(1), run(2)
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    assert not torch.equal(a["label"], c["label"])
    assert (a["label"][0, 40:44, 40:44, 30:34] == 2).all() and (a["label"] == 2).sum() > 64
    assert isinstance(a["image"], MetaTensor) and a["image"].dtype == image.dtype and a["label"].dtype == label.dtype
    never = SynthesizeTumoursd(prob=0.0)
    assert never(dict(data))["image"] is image


def test_it_works_on_a_real_ct_with_a_liver_mask(shared_data):
    from lib.data.fixtures import totalseg_fixture

    fixture = totalseg_fixture(shared_data)
    hu = np.asanyarray(fixture.image.dataobj).astype(np.float32)
    liver = np.asanyarray(fixture.label.dataobj) == 1
    p = paint(np.random.default_rng(0), hu, liver, fixture.image.header.get_zooms()[:3], 3, (10.0, 30.0))
    assert p.tumour.sum() > 50 and not (p.tumour & ~liver).any()
    assert 5 < noise_sd(hu, liver) < 40  # a clinical CT's noise


@pytest.mark.parametrize("preset", ["small"])
def test_a_phantoms_lesions_and_synthetic_ones_come_from_one_model(preset):
    """The generator's tumours are drawn by the same functions: their looks fall in the same ranges."""
    from lib.data.phantoms import generate_study

    study = generate_study(7, 3, preset)
    phase = PHASES.index(study.params["phase"])
    assert sum(t["kind"] != "subtle" for t in study.params["tumours"]) == 4
    for t in study.params["tumours"]:
        if t["kind"] != "subtle":
            lo, hi = CONTRAST[t["kind"]][phase]
            assert lo <= t["contrast_hu"] <= hi


def test_lesion_centres_lie_as_deep_as_the_distance_transform_says():
    """Whether a liver voxel may hold a lesion's centre (deep: nothing but liver nearer than 0.7 r; superficial:
    something else within 0.3 r) is what the crop's distance transform says, voxel for voxel, where the liver
    touches the crop's edge too (nothing beyond it counts); the centres drawn are among those voxels."""
    liver = np.zeros((40, 34, 24), bool)
    liver[4:40, 5:30, 0:20] = True  # cut by the crop at two faces
    liver[15:22, 12:19, 6:12] = False  # a vessel-like hole
    spacing = np.array([0.8, 0.8, 1.5])
    depth = ndimage.distance_transform_edt(liver, sampling=spacing)
    voxels = np.flatnonzero(liver)
    points = np.argwhere(liver)[::3]  # a third of the liver, spread through it
    for radius in (4.0, 10.0):
        deep = _clear(liver, points, _offsets(spacing, 0.7 * radius, strict=True))
        near = ~_clear(liver, points, _offsets(spacing, 0.3 * radius))
        assert np.array_equal(deep, depth[tuple(points.T)] >= 0.7 * radius) and 0 < deep.mean() < 1
        assert np.array_equal(near, depth[tuple(points.T)] <= 0.3 * radius) and 0 < near.mean() < 1
        for surface in (False, True):
            centres = {tuple(_centre(np.random.default_rng(s), liver, voxels, spacing, radius, surface,
                                     lambda: depth)) for s in range(30)}
            found = [depth[c] for c in centres]
            assert all(0 < d <= 0.3 * radius for d in found) if surface else all(d >= 0.7 * radius for d in found)
            assert len(centres) > 10  # drawn, not one voxel
