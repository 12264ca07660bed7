"""bench accuracy's stress test: a study's true liver moved by a number of HU on disk (lib.bench.liver_shift)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from lib.bench.liver_shift import shift_liver
from lib.data.nifti import nifti_image


def study(tmp_path):
    """A 100 HU liver with a 60 HU lesion in 40 HU tissue, 0.8 x 0.8 x 2.5 mm, its parameters beside it."""
    grid = np.indices((48, 40, 24))
    liver = ((grid[0] - 24) / 18) ** 2 + ((grid[1] - 20) / 15) ** 2 + ((grid[2] - 12) / 9) ** 2 <= 1
    lesion = (grid[0] - 24) ** 2 + (grid[1] - 20) ** 2 + (grid[2] - 12) ** 2 <= 16
    hu = np.where(liver, 100, 40) - 40 * lesion
    affine = np.diag([-0.8, 0.8, 2.5, 1.0])
    affine[:3, 3] = (12.0, -30.0, 100.0)
    (tmp_path / "in" / "truth").mkdir(parents=True)
    image, label = tmp_path / "in" / "s.nii.gz", tmp_path / "in" / "truth" / "s.nii.gz"
    nib.save(nifti_image(hu.astype(np.int16), affine), image)
    nib.save(nifti_image((liver.astype(np.uint8) + lesion), affine), label)
    (tmp_path / "in" / "s.json").write_text(json.dumps({"seed": 7, "index": 1}))
    return image, label, liver & ~lesion, lesion, affine


def test_the_liver_moves_by_the_shift_and_the_lesion_and_the_rest_stay(tmp_path):
    image, label, liver, lesion, affine = study(tmp_path)
    out = shift_liver(image, label, 20.0, tmp_path / "out")
    moved = nib.load(out)
    assert out.name == image.name and np.allclose(moved.affine, affine)
    before, after = np.asarray(nib.load(image).dataobj, dtype=np.float32), np.asarray(moved.dataobj)
    deep = ndimage.binary_erosion(liver, iterations=3)
    np.testing.assert_allclose(after[deep] - before[deep], 20.0, atol=0.01)
    core = ndimage.binary_erosion(lesion, iterations=2)
    np.testing.assert_allclose(after[core], before[core], atol=0.1)  # the blurred edge's tail only
    far = ~ndimage.binary_dilation(liver | lesion, np.ones((3, 3, 3)), iterations=3)
    np.testing.assert_array_equal(after[far], before[far])
    assert json.loads((tmp_path / "out" / "s.json").read_text())["seed"] == 7


def test_a_label_of_another_shape_is_refused(tmp_path):
    image, label, *_ = study(tmp_path)
    nib.save(nifti_image(np.zeros((8, 8, 8), np.uint8), np.eye(4)), label)
    with pytest.raises(ValueError, match="differ in shape"):
        shift_liver(image, label, 20.0, tmp_path / "out")
