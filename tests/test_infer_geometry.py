"""The label /infer returns overlays its image, whatever the image's orientation and spacing.

A stand-in network with a known answer (liver wherever the windowed CT is bright, as a TorchScript model)
isolates the geometry: orientation, resampling, cropping and their inversion, from what a model learnt.
"""

from __future__ import annotations

import functools
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.transforms import Spacingd

from lib.configs.settings import Settings
from lib.data.phantoms import generate_study
from lib.data.phantoms.acquisition import ORIENTATIONS
from lib.infers.liver_tumor import LiverTumorInfer
from lib.transforms.image_path import StashImagePathd


class Bright(torch.nn.Module):
    """Class 1 where the windowed CT is above 0.5 (HU > 84), else background."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.zeros_like(x), (x - 0.5) * 20.0, torch.full_like(x, -10.0)], dim=1)


@pytest.fixture(scope="module")
def infer(tmp_path_factory) -> LiverTumorInfer:
    path = tmp_path_factory.mktemp("ts") / "bright.ts"
    torch.jit.script(Bright()).save(str(path))
    settings = Settings.from_conf({"pretrained_path": str(path), "spacing": "3", "roi_size": "64",
                                   "min_tumour_ml": "0", "tumour_margin_mm": "1000"})
    return LiverTumorInfer([str(path)], settings, "test")


@functools.cache
def study(code: str, tmp: str) -> Path:
    s = generate_study(6, 2, "small", orientation=code, phase="portal_venous")
    path = Path(tmp) / f"{code}.nii.gz"
    nib.save(s.image, path)
    return path


def run(infer: LiverTumorInfer, path: Path) -> nib.Nifti1Image:
    label_file, _ = infer({"image": str(path), "device": "cpu"})
    label = nib.load(label_file)
    in_memory = nib.Nifti1Image(np.asanyarray(label.dataobj), label.affine)
    Path(label_file).unlink()
    return in_memory


@pytest.mark.parametrize("code", list(ORIENTATIONS))
def test_label_overlays_its_image_in_every_orientation(infer, tmp_path_factory, code):
    tmp = str(tmp_path_factory.getbasetemp())
    path = study(code, tmp)
    image = nib.load(path)
    label = run(infer, path)
    assert label.shape == image.shape
    assert np.allclose(label.affine, image.affine, atol=1e-4)
    # the answer is where the image is bright: check it against the image itself, in its own grid
    hu = np.asanyarray(image.dataobj).astype(float)
    bright = hu > 84
    got = np.asanyarray(label.dataobj) == 1
    assert 2 * (got & bright).sum() / (got.sum() + bright.sum()) > 0.8
    # and it is the same answer, voxel for voxel, as for the same study stored as RAS
    reference = run(infer, study("RAS", tmp))
    same = np.asanyarray(nib.as_closest_canonical(label).dataobj)
    ref = np.asanyarray(nib.as_closest_canonical(reference).dataobj)
    assert (same == ref).mean() > 0.999


def test_monai_spacingd_trap_and_its_fix(tmp_path):
    """MONAI >= 1.6 Spacingd updates every "image_*" entry as a dict: MONAI Label's image_path string breaks it.
    The InferTask keeps the path aside while transforms run."""
    from monai.transforms import EnsureChannelFirstd, LoadImaged

    path = study("LPS", str(tmp_path))
    data = EnsureChannelFirstd("image")(LoadImaged("image")({"image": str(path)}))
    data["image_path"] = str(path)
    with pytest.raises(AttributeError, match="'str' object has no attribute 'update'"):
        Spacingd("image", pixdim=(4, 4, 4))(dict(data))
    out = Spacingd("image", pixdim=(4, 4, 4))(StashImagePathd()(dict(data)))
    assert tuple(float(v) for v in out["image"].pixdim) == (4.0, 4.0, 4.0)
