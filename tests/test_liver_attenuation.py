"""Training crops that look like harder scans: a fatty liver made from any liver, an enhanced liver made brighter
(lib.transforms.liver_attenuation), and extra noise."""

from __future__ import annotations

import numpy as np
import torch
from monai.data import MetaTensor
from scipy import ndimage

from lib.data.phantoms.tissues import FATTY_LIVER_SHIFT
from lib.settings import Settings
from lib.transforms.liver_attenuation import RandBrightLiverd, RandFattyLiverd
from lib.transforms.preprocess import HU_WINDOW

from .conftest import train_random_transforms

LO, HI = HU_WINDOW


def crop(seed: int = 0) -> dict:
    """A 100 HU liver with a 60 HU lesion, in 40 HU tissue, windowed as the network sees it."""
    grid = np.indices((64, 64, 48))
    liver = ((grid[0] - 32) / 26) ** 2 + ((grid[1] - 32) / 24) ** 2 + ((grid[2] - 24) / 18) ** 2 <= 1
    lesion = ((grid[0] - 32) ** 2 + (grid[1] - 32) ** 2 + (grid[2] - 24) ** 2) <= 36
    hu = np.where(liver, 100.0, 40.0) - 40.0 * lesion + np.random.default_rng(seed).normal(0, 6, liver.shape)
    label = liver.astype(np.uint8) + lesion.astype(np.uint8)
    image = MetaTensor(torch.as_tensor(((hu - LO) / (HI - LO))[None], dtype=torch.float32))
    return {"image": image, "label": MetaTensor(torch.as_tensor(label[None]))}


def hu_of(d: dict) -> np.ndarray:
    return np.asarray(d["image"][0]) * (HI - LO) + LO


def test_the_liver_and_its_lesion_are_lowered_by_the_shift_and_nothing_far_from_it():
    before = crop()
    label = np.asarray(before["label"][0])
    liver, lesion = label == 1, label == 2
    far = ~ndimage.binary_dilation(label > 0, np.ones((3, 3, 3)), iterations=3)  # beyond the liver's blurred edge
    for shift in (-45.0, -25.0):
        after = hu_of(RandFattyLiverd(prob=1.0, shift_hu=(shift, shift))(before))
        inner = ndimage.binary_erosion(label > 0, np.ones((3, 3, 3)), iterations=3)  # the edge is blurred
        np.testing.assert_allclose(after[inner] - hu_of(before)[inner], shift, atol=0.01)
        contrast = np.median(after[lesion]) - np.median(after[liver])
        assert abs(contrast - (-40.0)) < 2.0  # the lesion went down with the liver
        np.testing.assert_allclose(after[far], hu_of(before)[far], atol=1e-3)
        assert np.abs(after - hu_of(before))[label == 0].max() < abs(shift)  # only its edge, partly
    assert isinstance(RandFattyLiverd(prob=1.0)(before)["image"], MetaTensor)


def test_it_draws_from_the_generators_fatty_liver_shift_by_seed_and_leaves_the_label():
    assert Settings().fatty_liver_hu == FATTY_LIVER_SHIFT  # one tissue model: the generator's and the training's
    d = crop()
    liver = np.asarray(d["label"][0]) == 1
    a, b = RandFattyLiverd(prob=1.0).set_random_state(3), RandFattyLiverd(prob=1.0).set_random_state(3)
    ra, rb = a(d), b(d)
    np.testing.assert_array_equal(np.asarray(ra["image"]), np.asarray(rb["image"]))
    np.testing.assert_array_equal(np.asarray(ra["label"]), np.asarray(d["label"]))
    shifts = [float(np.median(hu_of(a(d))[liver]) - np.median(hu_of(d)[liver])) for _ in range(8)]
    assert len({round(s, 2) for s in shifts}) == 8
    assert all(FATTY_LIVER_SHIFT[0] - 0.5 <= s <= FATTY_LIVER_SHIFT[1] + 0.5 for s in shifts)
    untouched = RandFattyLiverd(prob=0.0)(d)
    np.testing.assert_array_equal(np.asarray(untouched["image"]), np.asarray(d["image"]))


def test_a_floor_stops_the_liver_at_its_ct_number_and_leaves_a_darker_liver_alone():
    """fatty_liver_floor_hu: the shift is cut so that the liver's median CT number ends at the floor; a liver under
    the floor already (fatty, or dark without contrast) is not lowered at all."""
    before = crop()
    label = np.asarray(before["label"][0])
    inner = ndimage.binary_erosion(label > 0, np.ones((3, 3, 3)), iterations=3)
    floored = hu_of(RandFattyLiverd(prob=1.0, shift_hu=(-45.0, -45.0), floor_hu=70.0)(before))
    assert abs(np.median(floored[label == 1]) - 70.0) < 1.0  # 100 HU lowered by 30, not 45 (the edge blurred)
    np.testing.assert_allclose(floored[inner] - hu_of(before)[inner], np.median(floored[label == 1]) - 100.0, atol=1.0)
    free = hu_of(RandFattyLiverd(prob=1.0, shift_hu=(-45.0, -45.0), floor_hu=40.0)(before))
    assert abs(np.median(free[label == 1]) - 55.0) < 1.0  # above the floor: the whole shift
    untouched = RandFattyLiverd(prob=1.0, floor_hu=110.0)(before)
    np.testing.assert_array_equal(np.asarray(untouched["image"]), np.asarray(before["image"]))


def test_an_enhanced_liver_is_raised_by_the_shift_and_an_unenhanced_one_left_alone():
    """bright_liver_prob: a liver whose median is 90 HU or more (the 100 HU one here) goes up with its lesion, by a
    shift drawn from bright_liver_hu, nothing far from it moving; the same liver 45 HU darker (as without contrast)
    is not touched."""
    before = crop()
    label = np.asarray(before["label"][0])
    inner = ndimage.binary_erosion(label > 0, np.ones((3, 3, 3)), iterations=3)
    far = ~ndimage.binary_dilation(label > 0, np.ones((3, 3, 3)), iterations=3)
    after = hu_of(RandBrightLiverd(prob=1.0, shift_hu=(25.0, 25.0))(before))
    np.testing.assert_allclose(after[inner] - hu_of(before)[inner], 25.0, atol=0.01)
    assert abs(np.median(after[label == 2]) - np.median(after[label == 1]) - (-40.0)) < 2.0
    np.testing.assert_allclose(after[far], hu_of(before)[far], atol=1e-3)
    drawn = RandBrightLiverd(prob=1.0).set_random_state(5)
    rises = [float(np.median(hu_of(drawn(before))[label == 1]) - 100.0) for _ in range(8)]
    assert len({round(r, 2) for r in rises}) == 8 and all(9.5 <= r <= 30.5 for r in rises)
    dark = RandFattyLiverd(prob=1.0, shift_hu=(-45.0, -45.0))(before)  # median 55 HU
    untouched = RandBrightLiverd(prob=1.0)(dark)
    np.testing.assert_array_equal(np.asarray(untouched["image"]), np.asarray(dark["image"]))
    assert isinstance(RandBrightLiverd(prob=1.0)(before)["image"], MetaTensor)


def test_a_train_request_turns_it_on_before_the_synthesis(tmp_path):
    # the transforms' classes imported here, as the config imports them (see train_random_transforms)
    from lib.transforms.liver_attenuation import RandBrightLiverd, RandFattyLiverd
    from lib.transforms.synthesis import SynthesizeTumoursd

    steps = train_random_transforms(tmp_path, {"fatty_liver_prob": 0.4, "fatty_liver_hu": [-60, -30],
                                               "synth_prob": 0.5})
    kinds = [type(t) for t in steps]
    assert kinds.index(RandFattyLiverd) < kinds.index(SynthesizeTumoursd)
    fatty = next(t for t in steps if isinstance(t, RandFattyLiverd))
    assert fatty.prob == 0.4 and tuple(fatty.shift_hu) == (-60, -30) and fatty.floor_hu is None
    assert RandFattyLiverd not in [type(t) for t in train_random_transforms(tmp_path, {})]
    floored = train_random_transforms(tmp_path, {"fatty_liver_prob": 0.4, "fatty_liver_floor_hu": 25})
    assert next(t for t in floored if isinstance(t, RandFattyLiverd)).floor_hu == 25
    steps = train_random_transforms(tmp_path, {"fatty_liver_prob": 0.3, "bright_liver_prob": 0.2,
                                               "bright_liver_hu": [5, 20], "synth_prob": 0.5})
    kinds = [type(t) for t in steps]
    assert kinds.index(RandFattyLiverd) < kinds.index(RandBrightLiverd) < kinds.index(SynthesizeTumoursd)
    bright = next(t for t in steps if isinstance(t, RandBrightLiverd))
    assert bright.prob == 0.2 and tuple(bright.shift_hu) == (5, 20)
    assert RandBrightLiverd not in [type(t) for t in train_random_transforms(tmp_path, {})]


def test_a_train_request_adds_noise_in_hu_after_the_synthesis(tmp_path):
    """noise_prob and noise_hu: white noise whose standard deviation, in HU, is drawn up to noise_hu, added after
    the lesions are painted (they get it too)."""
    from monai.transforms import RandGaussianNoised

    from lib.transforms.synthesis import SynthesizeTumoursd

    steps = train_random_transforms(tmp_path, {"noise_prob": 1.0, "noise_hu": 30, "synth_prob": 0.5})
    kinds = [type(t) for t in steps]
    assert kinds.index(SynthesizeTumoursd) < kinds.index(RandGaussianNoised)
    noise = steps[kinds.index(RandGaussianNoised)]
    noise.set_random_state(0)
    flat = {"image": MetaTensor(torch.full((1, 32, 32, 32), (100.0 - LO) / (HI - LO)))}
    sds = [float(hu_of(noise(dict(flat))).std()) for _ in range(20)]
    assert max(sds) <= 30 * 1.02 and max(sds) > 20 and min(sds) < 15, sds
    assert RandGaussianNoised not in [type(t) for t in train_random_transforms(tmp_path, {})]
