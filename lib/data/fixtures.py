"""Real CT fixtures: LiTS case 117 from a PyPI package, and the studies in ../shared/data, as NIfTI images with
labels in the phantom layout (image and JSON side by side, label in truth/)."""

from __future__ import annotations

import os
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from .atomic import save_json, save_nifti
from .nifti import nifti_image
from .wheels import DownloadError, cached_wheel

LITS_REQUIREMENT = "liver-ct-segmentation-package==1.6.0"
LITS_WHEEL = "liver_ct_segmentation_package-1.6.0-py2.py3-none-any.whl"
LITS_MEMBERS = ("liver_ct_segmentation_package/data/img_117.mrc", "liver_ct_segmentation_package/data/lab_117.mrc")
# The MRC files carry no spacing. The crop is resized to the liver's bounding box; 1.5 mm isotropic puts that
# liver at about 2.1 L with its tumours, in line with LiTS livers carrying many tumours. A nominal value only.
LITS_SPACING_MM = 1.5
# Axes of the MRC arrays, read off the anatomy: left, posterior, superior (the usual LiTS layout). Slices across
# the last axis are axial, with the spine behind the liver towards the midline and the lung bases in the top ones;
# tests/test_fixtures.py checks this in patient coordinates.
LITS_AXES = ("L", "P", "S")

SHARED_ENV = "LIVER_TUMOR_SHARED_DATA"


class FixtureError(RuntimeError):
    """A fixture could not be made; the message names the cause."""


def read_lits_wheel(wheel: Path) -> tuple[np.ndarray, np.ndarray]:
    """The CT (float32 HU) and label (0/1/2) arrays of LiTS case 117, read from the wheel's MRC files."""
    import mrcfile

    try:
        with zipfile.ZipFile(wheel) as zf, tempfile.TemporaryDirectory() as tmp:
            arrays = []
            for member in LITS_MEMBERS:
                path = zf.extract(member, tmp)
                with mrcfile.open(path, permissive=True) as mrc:
                    arrays.append(np.array(mrc.data))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as e:
        raise FixtureError(f"{wheel} is not the expected wheel with LiTS case 117: {e}") from e
    image, label = arrays
    if image.shape != label.shape or image.ndim != 3:
        raise FixtureError(f"{wheel}: image {image.shape} and label {label.shape} do not match")
    return image.astype(np.float32), label.astype(np.uint8)


def lits_affine(shape: tuple[int, int, int], spacing: float = LITS_SPACING_MM) -> np.ndarray:
    """RAS affine for the LiTS arrays' axes, centred on the volume."""
    ornt = nib.orientations.axcodes2ornt(LITS_AXES)
    affine = np.zeros((4, 4))
    affine[3, 3] = 1
    for axis, (world, flip) in enumerate(ornt):
        affine[int(world), axis] = flip * spacing
    affine[:3, 3] = -affine[:3, :3] @ (np.asarray(shape) - 1) / 2
    return affine


@dataclass
class Fixture:
    id: str
    image: nib.Nifti1Image
    label: nib.Nifti1Image
    info: dict



def lits_fixture(wheel: Path) -> Fixture:
    image, label = read_lits_wheel(wheel)
    affine = lits_affine(image.shape)
    info = {
        "id": "lits_117",
        "source": f"PyPI {LITS_REQUIREMENT}, {' and '.join(LITS_MEMBERS)} (MIT licence)",
        "what": "LiTS training case 117 cropped to the liver, 128^3, float HU; labels 0 background, 1 liver, 2 tumour",
        "spacing_mm": [LITS_SPACING_MM] * 3,
        "spacing_note": "nominal: the MRC header holds no spacing",
        "labels": {"background": 0, "liver": 1, "tumour": 2},
    }
    return Fixture("lits_117", nifti_image(image, affine), nifti_image(label, affine), info)


def shared_data_dir() -> Path | None:
    """../shared/data beside the project's root (or $LIVER_TUMOR_SHARED_DATA), None where it is absent."""
    env = os.environ.get(SHARED_ENV)
    path = Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "data"
    return path if path.is_dir() else None


def _reoriented_like(label: nib.Nifti1Image, image_affine: np.ndarray) -> np.ndarray:
    """A label's array stored in the axis order of an image on the same grid."""
    transform = nib.orientations.ornt_transform(nib.io_orientation(label.affine), nib.io_orientation(image_affine))
    data = nib.orientations.apply_orientation(np.asanyarray(label.dataobj), transform)
    affine = label.affine @ nib.orientations.inv_ornt_aff(transform, label.shape)
    if not np.allclose(affine, image_affine, atol=1e-3):
        raise FixtureError("the label does not share its image's voxel grid")
    return data


def _load_dicom(files: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """A DICOM series as (array, RAS affine) through MONAI's ITK reader, which decodes JPEG 2000 too. ITK reads
    a series from a folder, so the files are linked into one of their own first."""
    from monai.transforms import LoadImage

    with tempfile.TemporaryDirectory() as tmp:
        for f in files:
            os.symlink(Path(f).resolve(), Path(tmp) / Path(f).name)
        img = LoadImage(reader="ITKReader", image_only=True)(tmp)
        return np.asarray(img), np.asarray(img.affine, dtype=np.float64)


def totalseg_fixture(shared: Path) -> Fixture:
    """TotalSegmentator's example abdomen CT with its silver liver: the one whole real CT of ../shared/data."""
    ts = shared / "totalsegmentator-example"
    ct = nib.load(ts / "ct.nii.gz")
    silver = nib.load(ts / "ct_liver_silver.nii.gz")
    return Fixture(
        "totalseg_ct", nifti_image(np.asanyarray(ct.dataobj).astype(np.int16), ct.affine),
        nifti_image(_reoriented_like(silver, ct.affine).astype(np.uint8), ct.affine),
        {"id": "totalseg_ct", "source": "TotalSegmentator tests/reference_files (Apache-2.0)",
         "what": "abdomen and pelvis CT, 3 mm; label: silver-standard liver (TotalSegmentator output)",
         "labels": {"background": 0, "liver": 1}})


def shared_fixtures(shared: Path) -> Iterator[Fixture]:
    """The real studies of ../shared/data with their liver labels, each read when it is reached."""
    import pydicom
    import pydicom_seg

    yield totalseg_fixture(shared)

    ts = shared / "totalsegmentator-example"
    array, affine = _load_dicom(sorted((ts / "dicom").iterdir()))
    labels = nib.load(ts / "dicom_totalseg_labels.nii.gz")
    liver = (_reoriented_like(labels, affine) == 5).astype(np.uint8)
    yield Fixture(
        "totalseg_dicom_slab", nifti_image(np.rint(array).astype(np.int16), affine), nifti_image(liver, affine),
        {"id": "totalseg_dicom_slab", "source": "TotalSegmentator tests/reference_files (Apache-2.0)",
         "what": "20-slice contrast CT slab of the upper abdomen, from its JPEG 2000 DICOM series; label: "
                 "TotalSegmentator liver (class 5)", "labels": {"background": 0, "liver": 1}})

    dq = shared / "dcmqi-liver-3slice"
    array, affine = _load_dicom(sorted(dq.glob("ct-3slice_*.dcm")))
    seg = pydicom_seg.SegmentReader().read(pydicom.dcmread(dq / "liver.dcm"))
    mask = np.transpose(seg.segment_data(1), (2, 1, 0)).astype(np.uint8)  # (z, y, x) -> (x, y, z)
    seg_affine = np.eye(4)
    seg_affine[:3, :3] = np.asarray(seg.direction) * np.asarray(seg.spacing)[None, :]
    seg_affine[:3, 3] = seg.origin
    seg_affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ seg_affine  # LPS to RAS
    liver = _reoriented_like(nifti_image(mask, seg_affine), affine)
    yield Fixture(
        "dcmqi_liver_3slice", nifti_image(np.rint(array).astype(np.int16), affine), nifti_image(liver, affine),
        {"id": "dcmqi_liver_3slice", "source": "QIICR/dcmqi data/segmentations (BSD-3-Clause)",
         "what": "three CT slices; label: the liver segment of the DICOM SEG liver.dcm",
         "labels": {"background": 0, "liver": 1}})


def write_fixture(f: Fixture, out: Path) -> dict[str, Path]:
    paths = {"image": out / f"{f.id}.nii.gz", "params": out / f"{f.id}.json", "label": out / "truth" / f"{f.id}.nii.gz"}
    info = dict(f.info, shape=list(f.image.shape), orientation="".join(nib.aff2axcodes(f.image.affine)),
                affine=np.round(f.image.affine, 6).tolist())
    save_nifti(f.label, paths["label"])
    save_json(info, paths["params"])
    save_nifti(f.image, paths["image"])
    return paths


def lits_wheel(cache: Path | None = None, find_links: str | None = None) -> Path:
    """The LiTS wheel from the cache, downloaded into it the first time."""
    try:
        return cached_wheel(LITS_REQUIREMENT, LITS_WHEEL, cache, find_links)
    except DownloadError as e:
        raise FixtureError(str(e)) from None


def real_ct_fixtures(cache: Path | None = None, find_links: str | None = None) -> list[Fixture]:
    """The real CT the models are measured on, never trained on: LiTS case 117, and the TotalSegmentator CT where
    ../shared/data is beside the project."""
    shared = shared_data_dir()
    return [lits_fixture(lits_wheel(cache, find_links))] + ([totalseg_fixture(shared)] if shared else [])


def make_fixtures(out: Path, cache: Path | None = None, find_links: str | None = None,
                  shared: Path | None = None) -> tuple[list[str], str | None]:
    """Write every fixture that can be made here; returns their ids and why the shared ones were skipped."""
    fixtures = [lits_fixture(lits_wheel(cache, find_links))]
    shared = shared or shared_data_dir()
    skipped = None
    if shared is None:
        skipped = f"no ../shared/data beside the project (set ${SHARED_ENV} to point at it)"
    else:
        fixtures += shared_fixtures(shared)
    for f in fixtures:
        write_fixture(f, out)
    return [f.id for f in fixtures], skipped
