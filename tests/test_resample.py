"""Axis-by-axis resampling (lib/transforms/resample.py) gives what MONAI's Spacingd gives, forward and inverted."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, EnsureChannelFirstd, Invertd, Orientationd, Spacingd

import lib.transforms.resample as resample
from lib.transforms.resample import AxisResample, AxisSpacingd, per_axis, resample_axes

KEYS = ["image", "label"]


def _study(affine: np.ndarray, shape: tuple[int, int, int]) -> dict[str, MetaTensor]:
    rng = np.random.default_rng(7)
    image = torch.as_tensor(rng.integers(-1000, 1000, shape), dtype=torch.int16)
    label = torch.as_tensor(rng.integers(0, 3, shape), dtype=torch.uint8)
    return {k: MetaTensor(v, affine=torch.as_tensor(affine)) for k, v in zip(KEYS, (image, label))}


def _run(spacing_cls: type, study: dict[str, MetaTensor]) -> tuple[dict, torch.Tensor]:
    """Forward with `spacing_cls` in the seed's pre-processing order, then the label inverted as the app does."""
    pre = Compose([EnsureChannelFirstd(KEYS, channel_dim="no_channel"), Orientationd(KEYS, axcodes="RAS"),
                   spacing_cls(KEYS, pixdim=(1.0, 1.0, 1.0), mode=["bilinear", "nearest"], dtype=torch.float32)])
    out = pre({k: v.clone() for k, v in study.items()})
    out["pred"] = out["label"].clone()
    back = Invertd("pred", transform=pre, orig_keys="label", nearest_interp=True)(dict(out))["pred"]
    return out, back


def _lps(spacing: tuple[float, float, float], origin: tuple[float, float, float]) -> np.ndarray:
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    affine[:3, 3] = origin
    return affine


ROTATED = _lps((0.9, 0.9, 2.0), (5.0, -3.0, 40.0))
ROTATED[:3, :3] = ROTATED[:3, :3] @ np.array([[np.cos(0.3), -np.sin(0.3), 0], [np.sin(0.3), np.cos(0.3), 0], [0, 0, 1]])


@pytest.mark.parametrize("affine, shape", [
    (_lps((0.78125, 0.78125, 2.5), (100.0, 120.0, -300.0)), (64, 60, 24)),  # 2.5 mm slices: ties on every other one
    (_lps((0.7, 0.75, 0.8), (-12.3, 4.5, 7.0)), (40, 44, 36)),  # upsampled on every axis
    (_lps((1.6, 1.5, 5.0), (0.0, 0.0, 0.0)), (20, 22, 10)),
    (ROTATED, (30, 28, 12)),  # axes not kept: MONAI's own path
])
def test_axis_spacing_equals_monai(affine, shape):
    study = _study(affine, shape)
    ours, ours_back = _run(AxisSpacingd, study)
    monai, monai_back = _run(Spacingd, study)
    for key in KEYS:
        assert ours[key].shape == monai[key].shape
        assert torch.allclose(ours[key].affine, monai[key].affine, atol=1e-9)
        assert len(ours[key].applied_operations) == len(monai[key].applied_operations)
    assert torch.allclose(ours["image"].as_tensor(), monai["image"].as_tensor(), atol=1e-2)  # HU
    assert torch.equal(ours["label"].as_tensor(), monai["label"].as_tensor())
    assert ours_back.shape == monai_back.shape == (1, *shape)
    assert torch.allclose(ours_back.affine, monai_back.affine, atol=1e-9)
    assert torch.equal(ours_back.as_tensor(), monai_back.as_tensor())  # nearest ties decided as MONAI decides them


def test_axis_path_taken_only_where_axes_are_kept(monkeypatch):
    assert per_axis(_lps((0.8, 0.8, 2.5), (1.0, 2.0, 3.0)), _lps((1.0, 1.0, 1.0), (0.0, 0.0, 0.0)))
    assert not per_axis(np.eye(4), ROTATED)
    calls = []
    monkeypatch.setattr(resample, "resample_axes", lambda *a: calls.append(1) or resample_axes(*a))
    image = MetaTensor(torch.rand(1, 10, 10, 6), affine=torch.as_tensor(_lps((0.8, 0.8, 2.5), (0.0, 0.0, 0.0))))
    resampler = AxisResample(mode="bilinear", padding_mode="border")
    kept = resampler(image, dst_affine=torch.as_tensor(_lps((1.0, 1.0, 1.0), (0.0, 0.0, 0.0))), spatial_size=(8, 8, 15))
    assert len(calls) == 1 and kept.shape == (1, 8, 8, 15)
    rotated = resampler(image, dst_affine=torch.as_tensor(ROTATED), spatial_size=(8, 8, 8))
    assert len(calls) == 1 and rotated.shape == (1, 8, 8, 8)  # MONAI's grid path
