"""augment_prob: nnU-Net's default augmentations in a train request, the label moved with the image."""

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import RandAffined

from lib.transforms.augment import augmentations

from .conftest import train_random_transforms


def _ball_crop(size: int = 48) -> dict:
    """A liver ball (label 1) with a tumour ball (label 2) in it; the image is 0.2 + 0.3 x label."""
    grid = np.indices((size,) * 3) - size / 2
    liver = np.sqrt((grid**2).sum(0)) < 16
    tumour = np.sqrt(((grid - np.array([6, 0, 0])[:, None, None, None]) ** 2).sum(0)) < 5
    label = liver.astype(np.float32) + tumour
    label = torch.as_tensor(label[None], dtype=torch.float32)
    return {"image": MetaTensor(0.2 + 0.3 * label), "label": MetaTensor(label.clone())}


def test_a_train_request_adds_the_augmentations_after_the_noise_and_none_by_default(tmp_path):
    from monai.transforms import RandGaussianNoised

    kinds = [type(t) for t in train_random_transforms(tmp_path, {"augment_prob": 0.2, "noise_prob": 0.5})]
    added = [type(t) for t in augmentations(0.2)]
    assert len(added) == 5 and all(k in kinds for k in added)
    assert kinds.index(RandGaussianNoised) < kinds.index(RandAffined)
    assert not any(k in [type(t) for t in train_random_transforms(tmp_path, {})] for k in added)


def test_rotation_and_scaling_move_the_label_with_the_image():
    """Where the label says liver or tumour after the affine, the image still holds that class's value (inside each
    class, away from the edges where bilinear interpolation mixes them); the label keeps its three values."""
    affine = augmentations(1.0)[0]
    moved_any = False
    for seed in range(4):
        affine.set_random_state(seed)
        crop = _ball_crop()
        out = affine(crop)
        image, label = np.asarray(out["image"][0]), np.asarray(out["label"][0])
        assert set(np.unique(label)) <= {0.0, 1.0, 2.0}
        assert image.shape == label.shape == (48, 48, 48)
        inner = np.ones_like(label, bool)  # voxels whose 3 x 3 x 3 neighbours share their class
        for shift in np.ndindex(3, 3, 3):
            inner &= np.roll(label, np.array(shift) - 1, axis=(0, 1, 2)) == label
        assert np.abs(image - (0.2 + 0.3 * label))[inner].max() < 0.01, seed
        moved_any |= bool((label != np.asarray(crop["label"][0])).sum() > 500)
    assert moved_any  # the transform ran: the balls moved or changed size


def test_the_appearance_transforms_change_the_image_only():
    crop = _ball_crop()
    before = np.asarray(crop["image"]).copy()
    for seed, step in enumerate(augmentations(1.0)[1:]):
        step.set_random_state(seed)
        out = step({k: v.clone() for k, v in crop.items()})
        assert torch.equal(torch.as_tensor(out["label"]), torch.as_tensor(crop["label"]))
        assert np.abs(np.asarray(out["image"]) - before).max() > 0.01, type(step).__name__
        assert np.isfinite(np.asarray(out["image"])).all()
