"""NIfTI images as this project writes them: millimetres, and the affine in both qform and sform."""

from __future__ import annotations

import nibabel as nib
import numpy as np


def nifti_image(array: np.ndarray, affine: np.ndarray) -> nib.Nifti1Image:
    img = nib.Nifti1Image(array, affine)
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    return img
