"""NIfTI CT volumes as DICOM CT series, and DICOM series back as NIfTI.

A PACS (Orthanc) holds DICOM, while the phantoms and the real fixtures are NIfTI: `nifti_to_series` writes one CT
Image Storage instance per slice, with the volume's geometry in patient (LPS) coordinates. MONAI and MONAI Label have
no NIfTI-to-DICOM writer, hence this one. UIDs derive from the study's name, so writing the same study twice gives
the same UIDs (Orthanc then keeps one copy). Reading a series back uses MONAI Label's own converter (SimpleITK/GDCM).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, CTImageStorage, ExplicitVRLittleEndian, generate_uid

from ..errors import InvalidInput

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(frozen=True)
class Series:
    study_uid: str
    series_uid: str
    files: list[Path]


def uid(*parts: str) -> str:
    """A UID derived from the given names: the same names give the same UID."""
    return generate_uid(entropy_srcs=["liver-tumor", *parts])


def nifti_to_series(nifti: Path, out_dir: Path, study_id: str | None = None, description: str = "CT") -> Series:
    """Write `nifti` (a 3D CT volume in HU) as a DICOM CT series of axial-ish slices in `out_dir`."""
    img = nib.load(str(nifti))
    data = np.asanyarray(img.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InvalidInput(f"{nifti.name}: a DICOM CT series needs a 3D volume, got shape {data.shape}")
    study_id = study_id or nifti.name.removesuffix(".gz").removesuffix(".nii")
    hu = np.clip(np.rint(data), -32768, 32767).astype(np.int16)

    affine = RAS_TO_LPS @ img.affine  # NIfTI world is RAS, DICOM's is LPS
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    row_dir, col_dir = affine[:3, 0] / spacing[0], affine[:3, 1] / spacing[1]  # along i (columns), along j (rows)
    study_uid, series_uid = uid(study_id, "study"), uid(study_id, "series")
    frame_uid = uid(study_id, "frame")
    today = datetime.date.today().strftime("%Y%m%d")
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for k in range(hu.shape[2]):
        sop_uid = uid(study_id, "slice", str(k))
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, sop_uid
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.PatientName, ds.PatientID = study_id, study_id
        ds.PatientBirthDate, ds.PatientSex = "", "O"
        ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = study_id[:16], "", ""
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = today
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
        ds.StudyDescription, ds.SeriesDescription = study_id, description
        ds.Modality, ds.Manufacturer, ds.BodyPartExamined = "CT", "liver-tumor", "ABDOMEN"
        ds.SeriesNumber, ds.InstanceNumber = 1, k + 1
        ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
        ds.PositionReferenceIndicator = ""
        position = affine @ np.array([0.0, 0.0, float(k), 1.0])
        ds.ImagePositionPatient = [f"{v:.6f}" for v in position[:3]]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in (*row_dir, *col_dir)]
        ds.PixelSpacing = [f"{spacing[1]:.6f}", f"{spacing[0]:.6f}"]  # between rows, between columns
        ds.SliceThickness = f"{spacing[2]:.6f}"
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = hu.shape[1], hu.shape[0]  # a row runs along i, the rows stack along j
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "0", "1", "HU"
        ds.WindowCenter, ds.WindowWidth = "60", "400"
        ds.PixelData = np.ascontiguousarray(hu[:, :, k].T).tobytes()
        ds.is_little_endian, ds.is_implicit_VR = True, False
        path = out_dir / f"{k + 1:04d}.dcm"
        ds.save_as(str(path), write_like_original=False)
        files.append(path)
    return Series(study_uid, series_uid, files)


def series_uids(folder: Path) -> dict[str, list[Path]]:
    """The DICOM files under `folder`, grouped by SeriesInstanceUID (files that are not DICOM are left out)."""
    groups: dict[str, list[Path]] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=["SeriesInstanceUID", "Modality"])
        except Exception:  # pydicom raises several kinds for files that are not DICOM
            continue
        series = str(ds.get("SeriesInstanceUID", ""))
        if series and ds.get("Modality", "") != "SEG":
            groups.setdefault(series, []).append(path)
    return groups


def series_to_nifti(folder: Path, series_uid: str, out: Path) -> Path:
    """One series of `folder` (its files sorted along the slice normal by GDCM, as MONAI Label's converter does) as
    a NIfTI file; a series with uneven slice gaps (missing slices) is refused rather than silently stretched."""
    import SimpleITK as sitk

    names = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_uid, False, True)
    if not names:
        raise InvalidInput(f"no DICOM files of series {series_uid} in {folder}")
    positions = []
    for name in names:
        ds = pydicom.dcmread(name, stop_before_pixels=True, specific_tags=["ImagePositionPatient",
                                                                           "ImageOrientationPatient"])
        if "ImagePositionPatient" not in ds or "ImageOrientationPatient" not in ds:
            raise InvalidInput(f"series {series_uid}: {Path(name).name} has no image position or orientation")
        o = np.asarray(ds.ImageOrientationPatient, dtype=float)
        positions.append(float(np.dot(np.cross(o[:3], o[3:]), np.asarray(ds.ImagePositionPatient, dtype=float))))
    if len(names) < 2:
        raise InvalidInput(f"series {series_uid} has {len(names)} slice: not a 3D volume")
    gaps = np.diff(sorted(positions))
    if gaps.min() <= 1e-3 or gaps.max() - gaps.min() > max(0.01, 0.05 * float(np.median(gaps))):
        raise InvalidInput(f"series {series_uid}: slice gaps from {gaps.min():.3g} to {gaps.max():.3g} mm "
                           f"(missing or duplicate slices)")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(names)
    image = reader.Execute()
    out.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(out), True)
    return out
