"""The liver moved to another CT number in a training crop (lib.transforms.liver_attenuation)."""

from __future__ import annotations

import numpy as np
import torch
from monai.data import MetaTensor
from scipy import ndimage

from lib.transforms.liver_attenuation import RandLiverAttenuationd
from lib.transforms.preprocess import HU_WINDOW

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


def test_the_liver_lands_on_the_drawn_number_and_its_lesion_keeps_its_contrast():
    before = crop()
    label = np.asarray(before["label"][0])
    liver, lesion = label == 1, label == 2
    for target in (5.0, 40.0, 120.0):
        t = RandLiverAttenuationd(prob=1.0, hu=(target, target))
        after = hu_of(t(before))
        assert abs(np.median(after[liver]) - target) < 1.5  # (noise under the window's -21 HU is clipped)
        if target - 40 > LO + 20:  # the lesion within the window: it moved with the liver
            contrast = np.median(after[lesion]) - np.median(after[liver])
            assert abs(contrast - (-40.0)) < 2.0
        far = ~ndimage.binary_dilation(label > 0, np.ones((3, 3, 3)), iterations=3)  # beyond the liver's blurred edge
        np.testing.assert_allclose(after[far], hu_of(before)[far], atol=1e-3)
        assert np.abs(after - hu_of(before))[label == 0].max() < abs(target - 100)  # only its edge, partly
    assert isinstance(t(before)["image"], MetaTensor)


def test_it_is_random_by_seed_and_leaves_the_label():
    d = crop()
    a = RandLiverAttenuationd(prob=1.0, hu=(0.0, 125.0)).set_random_state(3)
    b = RandLiverAttenuationd(prob=1.0, hu=(0.0, 125.0)).set_random_state(3)
    ra, rb = a(d), b(d)
    np.testing.assert_array_equal(np.asarray(ra["image"]), np.asarray(rb["image"]))
    np.testing.assert_array_equal(np.asarray(ra["label"]), np.asarray(d["label"]))
    medians = {round(float(np.median(hu_of(a(d))[np.asarray(d["label"][0]) == 1]))) for _ in range(8)}
    assert len(medians) == 8 and min(medians) >= -1 and max(medians) <= 126
    untouched = RandLiverAttenuationd(prob=0.0)(d)
    np.testing.assert_array_equal(np.asarray(untouched["image"]), np.asarray(d["image"]))


def test_a_train_request_turns_it_on_before_the_synthesis(tmp_path):
    from lib.configs.liver_tumor import LiverTumor
    from lib.transforms.synthesis import SynthesizeTumoursd

    config = LiverTumor()
    config.init("liver_tumor", str(tmp_path), {"pretrained_path": "none", "spacing": "4"}, None)
    task = config.trainer()

    class Ctx:
        request = task.options({"liver_hu_prob": 0.4, "liver_hu": [10, 50], "synth_prob": 0.5})

    kinds = [type(t) for t in task.random_transforms(Ctx())]
    assert kinds.index(RandLiverAttenuationd) < kinds.index(SynthesizeTumoursd)
    moved = next(t for t in task.random_transforms(Ctx()) if isinstance(t, RandLiverAttenuationd))
    assert moved.prob == 0.4 and tuple(moved.hu) == (10, 50)
    Ctx.request = task.options({})
    assert RandLiverAttenuationd not in [type(t) for t in task.random_transforms(Ctx())]
