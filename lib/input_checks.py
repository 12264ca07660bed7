"""Checks of images and labels before anything uses or stores them: each failure names the problem."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from .errors import InvalidInput

NIFTI_SUFFIXES = (".nii", ".nii.gz")
LABEL_VALUES = (0, 1, 2)
MIN_SIDE, MIN_SLICES = 16, 4  # voxels: smaller is no abdominal CT (and no sliding window fits it usefully)


def _suffix(name: str) -> str:
    name = name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix


def load_nifti(path: Path | str, what: str = "image", max_mb: float | None = None
               ) -> tuple[nib.Nifti1Image, np.ndarray]:
    """Open a NIfTI file and read all its voxels (a truncated file fails here, not later); for an image, its
    header is checked first (check_header)."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        raise InvalidInput(f"the {what} file is empty")
    if _suffix(path.name) not in NIFTI_SUFFIXES:
        raise InvalidInput(f"the {what} must be NIfTI (.nii or .nii.gz), got {path.name!r}")
    try:
        img = nib.load(str(path))
    except Exception as e:  # nibabel, gzip and zlib raise many kinds for broken files
        raise _unreadable(what, e) from e
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InvalidInput(f"the {what} is not a NIfTI image")
    if what == "image":
        check_header(img, max_mb, what)
    try:
        data = np.asanyarray(img.dataobj)
    except Exception as e:
        raise _unreadable(what, e) from e
    return img, data


def _unreadable(what: str, e: Exception) -> InvalidInput:
    return InvalidInput(f"the {what} is not a readable NIfTI file ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else 'truncated or corrupt'})")


def _spatial(shape: tuple[int, ...], what: str) -> tuple[int, ...]:
    """The three spatial sizes of a 3D volume (a trailing singleton allowed), or why it is not one."""
    spatial = tuple(shape[:3]) if len(shape) == 4 and shape[3] == 1 else tuple(shape)
    if len(spatial) != 3:
        raise InvalidInput(f"the {what} is {len(shape)}D with shape {tuple(shape)}: expected a 3D CT volume")
    smallest, *others = sorted(spatial)
    if smallest < MIN_SLICES or min(others) < MIN_SIDE:
        raise InvalidInput(f"the {what} has shape {tuple(shape)}: too small to be an abdominal CT (at least "
                           f"{MIN_SIDE} x {MIN_SIDE} x {MIN_SLICES} voxels)")
    return spatial


def check_header(img: nib.spatialimages.SpatialImage, max_mb: float | None, what: str = "image") -> None:
    """What the header alone tells, before any voxel is read: 3D, big enough, and within the size limit (a
    compressed file can hold a volume far larger than itself)."""
    _spatial(img.shape, what)
    dtype = img.get_data_dtype()
    scaled = getattr(img.dataobj, "slope", 1.0) != 1.0 or getattr(img.dataobj, "inter", 0.0) != 0.0
    size_mb = float(np.prod(img.shape, dtype=np.float64)) * (4 if scaled else dtype.itemsize) / 1e6
    if max_mb is not None and size_mb > max_mb:
        raise InvalidInput(f"the {what} holds {size_mb:.0f} MB of voxels ({' x '.join(map(str, img.shape))} "
                           f"{dtype}): over this server's limit of {max_mb:.0f} MB (--conf max_image_mb)")


def ct_warnings(data: np.ndarray) -> list[str]:
    """What a usable volume shows that is unlike CT in HU; it is segmented as CT all the same, with these said."""
    if data.size and float(data.min()) > -200:
        return [f"no voxel below -200 (lowest {float(data.min()):.0f}): CT holds air at about -1000 HU, so this "
                "looks like MR or rescaled intensities; the model, trained on CT in HU, may be wrong here"]
    return []


def check_ct(data: np.ndarray, what: str = "image") -> None:
    """A 3D CT volume: three dimensions (a trailing singleton allowed), big enough, real numbers, finite, not
    constant."""
    _spatial(data.shape, what)
    if np.iscomplexobj(data) or data.dtype == bool:
        raise InvalidInput(f"the {what} has voxel type {data.dtype}: expected real CT numbers")
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        raise InvalidInput(f"the {what} has NaN or infinite voxels")
    low, high = (data.min(), data.max()) if data.size else (0, 0)
    if low == high:
        raise InvalidInput(f"the {what} is constant ({data.flat[0]}): nothing to segment")
    if data.dtype.kind in "iub" and high - low == 1:
        raise InvalidInput(f"the {what} holds two values only ({low} and {high}): a mask or label, not a CT volume")


def check_image_file(path: Path | str, max_mb: float | None = None) -> nib.Nifti1Image:
    img, data = load_nifti(path, "image", max_mb)
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
