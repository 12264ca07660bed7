"""NIfTI to DICOM CT series and back, and labels to DICOM SEG and back, in any orientation: files on disk only."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from lib.data.nifti import nifti_image
from lib.dicom.seg import read_seg, write_seg
from lib.dicom.series import nifti_to_series, series_to_nifti, series_uids
from lib.errors import InvalidInput

from .conftest import ROOT

STUDY = ROOT / "sample-data" / "phantom_2026_000.nii.gz"
TRUTH = ROOT / "sample-data" / "truth" / "phantom_2026_000.nii.gz"


def _reoriented(tmp_path, how: str):
    """The sample study and its truth stored another way: LPS voxel order, or axes swapped and a tilt."""
    img, truth = nib.load(STUDY), nib.load(TRUTH)
    data, label, affine = np.asanyarray(img.dataobj), np.asanyarray(truth.dataobj), img.affine.copy()
    if how == "lps":
        flip = np.diag([-1.0, -1.0, 1.0, 1.0])
        flip[0, 3], flip[1, 3] = data.shape[0] - 1, data.shape[1] - 1
        data, label, affine = data[::-1, ::-1], label[::-1, ::-1], affine @ flip
    elif how == "tilted":
        data, label = data.transpose(1, 0, 2), label.transpose(1, 0, 2)
        swap = np.eye(4)[[1, 0, 2, 3]]
        c, s = np.cos(0.2), np.sin(0.2)
        tilt = np.array([[1, 0, 0, 0], [0, c, -s, 0], [0, s, c, 0], [0, 0, 0, 1.0]])
        affine = tilt @ affine @ swap
    paths = tmp_path / f"{how}.nii.gz", tmp_path / f"{how}_label.nii.gz"
    nib.save(nifti_image(np.ascontiguousarray(data), affine), paths[0])
    nib.save(nifti_image(np.ascontiguousarray(label).astype(np.uint8), affine), paths[1])
    return paths


@pytest.mark.parametrize("how", ["ras", "lps", "tilted"])
def test_series_and_seg_round_trip(tmp_path, how):
    image, label = (STUDY, TRUTH) if how == "ras" else _reoriented(tmp_path, how)
    series = nifti_to_series(image, tmp_path / "series", study_id=how)
    assert len(series.files) == nib.load(image).shape[2]
    assert list(series_uids(tmp_path / "series")) == [series.series_uid]
    back = series_to_nifti(tmp_path / "series", series.series_uid, tmp_path / "back.nii.gz")

    # the series holds the same voxels at the same places in the world (a reader may store them in another
    # voxel order: compared in the closest RAS order)
    original, read = nib.as_closest_canonical(nib.load(image)), nib.as_closest_canonical(nib.load(back))
    assert original.shape == read.shape
    assert np.allclose(original.affine, read.affine, atol=1e-3)
    assert np.array_equal(np.rint(original.get_fdata()), read.get_fdata())

    # the label, written as SEG against the series' slices (on the series' grid, as the app returns it) and read
    # back, has the same voxels
    on_grid = tmp_path / "label_on_series.nii.gz"
    sitk.WriteImage(sitk.Resample(sitk.ReadImage(str(label)), sitk.ReadImage(str(back)), sitk.Transform(),
                                  sitk.sitkNearestNeighbor, 0), str(on_grid))
    seg = write_seg(on_grid, series.files, tmp_path / "seg.dcm")
    seg_image, names = read_seg(seg)
    assert names == {1: "Liver", 2: "Liver tumour"}
    on_label = sitk.Resample(seg_image, sitk.ReadImage(str(label)), sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    voxels = sitk.GetArrayFromImage(on_label).transpose(2, 1, 0)
    assert np.array_equal(voxels, np.asanyarray(nib.load(label).dataobj))


def test_seg_refuses_what_it_cannot_store(tmp_path):
    series = nifti_to_series(STUDY, tmp_path / "series")
    affine = nib.load(STUDY).affine
    empty = tmp_path / "empty.nii.gz"
    nib.save(nifti_image(np.zeros(nib.load(STUDY).shape, np.uint8), affine), empty)
    with pytest.raises(InvalidInput, match="empty"):
        write_seg(empty, series.files, tmp_path / "seg.dcm")
    three = tmp_path / "three.nii.gz"
    data = np.zeros(nib.load(STUDY).shape, np.uint8)
    data[10:20, 10:20, 10:20] = 3
    nib.save(nifti_image(data, affine), three)
    with pytest.raises(InvalidInput, match=r"values \[3\]"):
        write_seg(three, series.files, tmp_path / "seg.dcm")


def test_series_with_a_missing_slice_is_refused(tmp_path):
    series = nifti_to_series(STUDY, tmp_path / "series")
    series.files[20].unlink()
    with pytest.raises(InvalidInput, match="missing or duplicate slices"):
        series_to_nifti(tmp_path / "series", series.series_uid, tmp_path / "back.nii.gz")


def test_real_ct_round_trip(shared_data, tmp_path):
    """The real abdominal CT of ../shared/data (int32 HU, 3 mm) as a DICOM series: same voxels, same place."""
    image = shared_data / "totalsegmentator-example" / "ct.nii.gz"
    series = nifti_to_series(image, tmp_path / "series")
    back = series_to_nifti(tmp_path / "series", series.series_uid, tmp_path / "back.nii.gz")
    original, read = nib.as_closest_canonical(nib.load(image)), nib.as_closest_canonical(nib.load(back))
    assert original.shape == read.shape and np.allclose(original.affine, read.affine, atol=1e-3)
    assert np.array_equal(np.asanyarray(original.dataobj), np.asanyarray(read.dataobj))
