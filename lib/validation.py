"""Checks of images and labels before anything uses or stores them: each failure names the problem."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from .errors import InvalidInput

NIFTI_SUFFIXES = (".nii", ".nii.gz")
LABEL_VALUES = (0, 1, 2)


def _suffix(name: str) -> str:
    name = name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix


def load_nifti(path: Path | str, what: str = "image") -> tuple[nib.Nifti1Image, np.ndarray]:
    """Open a NIfTI file and read all its voxels (a truncated file fails here, not later)."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        raise InvalidInput(f"the {what} file is empty")
    if _suffix(path.name) not in NIFTI_SUFFIXES:
        raise InvalidInput(f"the {what} must be NIfTI (.nii or .nii.gz), got {path.name!r}")
    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except Exception as e:  # nibabel, gzip and zlib raise many kinds for broken files
        raise InvalidInput(f"the {what} is not a readable NIfTI file ({type(e).__name__}: "
                           f"{str(e).splitlines()[0] if str(e) else 'truncated or corrupt'})") from e
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InvalidInput(f"the {what} is not a NIfTI image")
    return img, data


def check_ct(data: np.ndarray, what: str = "image") -> None:
    """A 3D CT volume: three dimensions (a trailing singleton allowed), real numbers, finite, not constant."""
    shape = data.shape
    spatial = shape[:3] if data.ndim == 4 and shape[3] == 1 else shape
    if len(spatial) != 3:
        raise InvalidInput(f"the {what} is {data.ndim}D with shape {shape}: expected a 3D CT volume")
    if min(spatial) < 2:
        raise InvalidInput(f"the {what} has shape {shape}: too thin to be a 3D CT volume")
    if np.iscomplexobj(data) or data.dtype == bool:
        raise InvalidInput(f"the {what} has voxel type {data.dtype}: expected real CT numbers")
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        raise InvalidInput(f"the {what} has NaN or infinite voxels")
    if data.size and data.min() == data.max():
        raise InvalidInput(f"the {what} is constant ({data.flat[0]}): nothing to segment")


def check_image_file(path: Path | str) -> nib.Nifti1Image:
    img, data = load_nifti(path, "image")
    check_ct(data)
    return img


def check_label_file(path: Path | str, image: nib.Nifti1Image) -> None:
    """A label for an image: same grid (shape and affine), values 0 background, 1 liver, 2 tumour."""
    img, data = load_nifti(path, "label")
    image_shape = image.shape[:3]
    label_shape = data.shape[:3] if data.ndim == 4 and data.shape[3] == 1 else data.shape
    if tuple(label_shape) != tuple(image_shape):
        raise InvalidInput(f"the label's shape {tuple(data.shape)} differs from its image's {tuple(image.shape)}")
    if not np.allclose(img.affine, image.affine, atol=1e-3, rtol=1e-4):
        raise InvalidInput("the label's affine (position, orientation or spacing) differs from its image's")
    if np.iscomplexobj(data) or (data.dtype.kind == "f" and not np.isfinite(data).all()):
        raise InvalidInput("the label has non-finite values")
    values = np.unique(data)
    bad = [v for v in values.tolist() if v not in LABEL_VALUES]
    if bad:
        raise InvalidInput(f"the label has values {bad[:5]}: expected 0 background, 1 liver, 2 tumour")
