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

from lib.data.phantoms import generate_study
from lib.data.phantoms.acquisition import ORIENTATIONS
from lib.infers.liver_tumor import LiverTumorInfer
from lib.settings import LOCATOR_CHECKPOINT, Settings
from lib.transforms.image_path import StashImagePathd


class Bright(torch.nn.Module):
    """Class 1 where the windowed CT is above 0.5 (HU > 84), else background."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.zeros_like(x), (x - 0.5) * 20.0, torch.full_like(x, -10.0)], dim=1)


def bright_infer(folder: Path, locator: str) -> LiverTumorInfer:
    path = folder / "bright.ts"
    torch.jit.script(Bright()).save(str(path))
    settings = Settings.from_conf({"pretrained_path": str(path), "spacing": "3", "roi_size": "64",
                                   "min_tumour_ml": "0", "tumour_margin_mm": "1000", "locator_path": locator})
    return LiverTumorInfer([str(path)], settings, "test")


@pytest.fixture(scope="module")
def infer(tmp_path_factory) -> LiverTumorInfer:
    """The whole volume (no cascade): the answer is the bright voxels everywhere."""
    return bright_infer(tmp_path_factory.mktemp("ts"), "none")


@pytest.fixture(scope="module")
def infer_cascade(tmp_path_factory) -> LiverTumorInfer:
    """The cascade with the shipped locator: the answer is the bright voxels inside the liver's box."""
    return bright_infer(tmp_path_factory.mktemp("ts"), str(LOCATOR_CHECKPOINT))


@functools.cache
def study(code: str, tmp: str) -> Path:
    s = generate_study(6, 2, "small", orientation=code, phase="portal_venous")
    path = Path(tmp) / f"{code}.nii.gz"
    nib.save(s.image, path)
    return path


def run(infer: LiverTumorInfer, path: Path) -> nib.Nifti1Image:
    return run_with_region(infer, path)[0]


def run_with_region(infer: LiverTumorInfer, path: Path) -> tuple[nib.Nifti1Image, dict]:
    label_file, result = infer({"image": str(path), "device": "cpu"})
    label = nib.load(label_file)
    in_memory = nib.Nifti1Image(np.asanyarray(label.dataobj), label.affine)
    Path(label_file).unlink()
    return in_memory, result["region"]


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


@pytest.mark.parametrize("code", ["RAS", "LPS", "PLS", "ASL"])
def test_the_cascade_label_overlays_its_image(infer_cascade, tmp_path_factory, code):
    """The box is cut in the study's own voxels and the label pasted back: bright voxels inside the box, nothing
    outside it, in the study's shape and affine."""
    path = study(code, str(tmp_path_factory.getbasetemp()))
    image = nib.load(path)
    label, region = run_with_region(infer_cascade, path)
    assert label.shape == image.shape and np.allclose(label.affine, image.affine, atol=1e-4)
    assert region["cascade"], region  # this study's liver is inside the scan: the box is cut
    box = tuple(slice(a, b) for a, b in zip(region["start"], region["stop"]))
    got = np.asanyarray(label.dataobj) == 1
    bright = np.asanyarray(image.dataobj).astype(float)[box] > 84
    assert 2 * (got[box] & bright).sum() / (got[box].sum() + bright.sum()) > 0.8
    outside = got.copy()
    outside[box] = False
    assert not outside.any()


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
