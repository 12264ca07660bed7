"""Crops where the model being fine-tuned errs on tumours (crop_ratios' fourth number): which voxels count as its
errors, where they lie in the study, and that crops are centred there."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import RandCropByLabelClassesd

from lib.trainers.hard_centres import AddHardCentresd, error_parts, hard_centres, liver_box


def _ball(shape, centre, radius):
    grid = np.indices(shape)
    return sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius ** 2


def test_errors_are_missed_lesions_and_false_positives_as_the_lesion_count_sees_them():
    """Two true lesions, one touched by a prediction (found: no error, not even its unpredicted part), one missed;
    a false-positive component of 33 voxels and a speck of 1 under the clean-up's size."""
    shape = (40, 40, 40)
    label = np.ones(shape, np.uint8)
    found, missed = _ball(shape, (10, 10, 10), 4), _ball(shape, (30, 30, 30), 3)
    label[found | missed] = 2
    pred = np.ones(shape, np.uint8)
    pred[_ball(shape, (10, 10, 12), 2)] = 2  # overlaps the first lesion in part
    false = _ball(shape, (10, 30, 20), 2)
    pred[false] = 2
    pred[30, 5, 5] = 2
    parts, n_missed, n_false = error_parts(pred, label, min_voxels=10)
    assert (n_missed, n_false) == (1, 1)
    np.testing.assert_array_equal(parts == 1, missed)
    np.testing.assert_array_equal(parts == 2, false)
    assert (parts > 0).sum() == missed.sum() + 33
    parts, n_missed, n_false = error_parts(pred, label, min_voxels=1)
    assert (n_missed, n_false) == (1, 2) and parts[30, 5, 5] == 3
    assert error_parts(label, label, min_voxels=1)[1:] == (0, 0)


def test_the_liver_box_is_the_foreground_grown_and_clipped():
    label = np.zeros((30, 30, 30), np.uint8)
    label[5:10, 12:20, 25:28] = 1
    assert liver_box(label, (3, 3, 3)) == (slice(2, 13), slice(9, 23), slice(22, 30))
    assert liver_box(label * 0, (3, 3, 3)) is None


class Threshold(torch.nn.Module):
    """A fixed 'network' that calls tumour wherever the windowed image is above 0.8 and liver elsewhere, so that
    the test knows where it errs."""

    def __init__(self) -> None:
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(1))  # where the network lives

    def forward(self, x):
        tumour = (x > 0.8).float()
        return torch.cat([torch.zeros_like(x), 1 - tumour, tumour], 1) * 10


def test_hard_centres_are_where_the_network_errs_in_the_whole_study():
    """The network runs on the liver's box only; the centres come back as flat indices into the whole study, on
    the missed lesion and the false tumour, at most as many as asked, half from each (the false tumour is larger)."""
    shape = (96, 56, 48)
    image = np.full(shape, 0.5, np.float32)
    label = np.zeros(shape, np.uint8)
    label[20:50, 10:40, 10:40] = 1
    missed, found = _ball(shape, (30, 20, 20), 3), _ball(shape, (40, 30, 30), 3)
    label[missed | found] = 2
    image[found] = 0.9  # bright: the threshold finds it
    false = _ball(shape, (25, 35, 30), 4) & ~found
    image[false] = 0.95  # bright liver: false tumour
    image[80:, :5, :5] = 0.99  # bright, far outside the liver's box: never looked at
    centres, n_missed, n_false = hard_centres(
        Threshold(), MetaTensor(image[None]), torch.as_tensor(label[None]), (1.0, 1.0, 1.0), min_tumour_ml=0.01,
        max_centres=10_000, rng=np.random.default_rng(0), roi=(32, 32, 32), overlap=0.25, dtype=None,
        smooth_above_hu=0, smooth_sigma_mm=1.0)
    expected = np.flatnonzero((missed | false).ravel())
    assert (n_missed, n_false) == (1, 1)
    np.testing.assert_array_equal(centres.numpy(), expected)
    few, _, _ = hard_centres(Threshold(), MetaTensor(image[None]), torch.as_tensor(label[None]), (1.0, 1.0, 1.0), 0.01,
                       max_centres=20, rng=np.random.default_rng(0), roi=(32, 32, 32), overlap=0.25, dtype=None,
                       smooth_above_hu=0, smooth_sigma_mm=1.0)
    assert len(few) == 20 and set(few.numpy()) <= set(expected)
    assert np.isin(few.numpy(), np.flatnonzero(missed.ravel())).sum() == 10  # as many from each error


@pytest.mark.parametrize("has_errors", [True, False])
def test_crops_by_the_fourth_ratio_are_centred_on_the_errors(has_errors):
    shape = (40, 40, 40)
    label = torch.zeros((1, *shape), dtype=torch.uint8)
    label[0, 10:30, 10:30, 10:30] = 1
    image = MetaTensor(torch.rand(1, *shape), meta={"filename_or_obj": "/data/study.nii.gz"})
    errors = np.flatnonzero(_ball(shape, (25, 25, 25), 2).ravel())
    table = {"/data/study.nii.gz": torch.as_tensor(errors)} if has_errors else {}
    by_class = [torch.as_tensor(np.flatnonzero((label[0] == c).numpy().ravel())) for c in range(3)]
    study = AddHardCentresd("centres", table)({"image": image, "label": label, "centres": by_class})
    assert len(study["centres"]) == 4
    crop = RandCropByLabelClassesd(("image", "label"), "label", (8, 8, 8), ratios=[1, 0, 0, 3], num_classes=4,
                                   num_samples=40, indices_key="centres", warn=False)
    crop.set_random_state(0)
    centres = [c["image"].meta.get("crop_center") for c in crop(study)]
    on_errors = [tuple(int(v) for v in c) in {tuple(p) for p in np.argwhere(_ball(shape, (25, 25, 25), 2))}
                 for c in centres]
    if has_errors:
        assert 20 <= sum(on_errors) < 40  # about 3 in 4; the rest centred on background
    else:
        assert sum(on_errors) == 0  # no errors: their share goes to the other classes
