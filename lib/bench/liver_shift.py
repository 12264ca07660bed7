"""Studies with their liver's CT number moved: a stress test of what a network takes a liver to be.

The phantom generator draws a portal-venous liver from 98 to 125 HU; how bright a real one gets varies with the
contrast dose, the patient and the timing.
`bench accuracy --liver-shift-hu 20` measures studies with their true liver (label 1: parenchyma and vessels;
tumours keep their CT number) moved by that much, over an edge blurred as much as the training's liver shifts blur
theirs (lib.transforms.liver_attenuation). MONAI's intensity transforms move a whole image; none moves one labelled
structure of a study on disk.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from ..data.nifti import nifti_image
from ..data.phantoms.study import params_beside
from ..transforms.liver_attenuation import EDGE_SIGMA


def shift_liver(image: Path, label: Path, shift_hu: float, out: Path) -> Path:
    """A copy of `image` in `out` (same name and affine, float32 HU) with the liver of `label` moved by shift_hu;
    the study's parameters (its JSON beside it) are copied with it."""
    img = nib.load(str(image))
    liver = np.asanyarray(nib.load(str(label)).dataobj) == 1
    if liver.shape != img.shape:
        raise ValueError(f"{label.name}: label {liver.shape} and image {img.shape} differ in shape")
    weight = ndimage.gaussian_filter(liver.astype(np.float32), EDGE_SIGMA)
    moved = np.asarray(img.dataobj, dtype=np.float32) + np.float32(shift_hu) * weight
    out.mkdir(parents=True, exist_ok=True)
    path = out / image.name
    nib.save(nifti_image(moved, img.affine), str(path))
    params = params_beside(image)  # where known_tumours reads a phantom's lesions
    if params.exists():
        shutil.copy(params, params_beside(path))
    return path
