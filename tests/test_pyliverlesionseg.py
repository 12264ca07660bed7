"""pyliverlesionseg's networks in PyTorch: the port computes what the Keras models compute, the package's resampling
and windows are reproduced, and the model reaches on real CT what the package reaches."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from scipy import ndimage

from lib.data.wheels import DownloadError, cached_wheel
from lib.metrics.dice import compare
from lib.metrics.lesions import lesion_detection
from lib.model.generalized_unet import GeneralizedUNet, alignment_pools, load_hdf5_weights, predict
from lib.model.keras_reference import verify
from lib.model.pyliverlesionseg import LESION, LIVER
from lib.recipes.pyliverlesionseg import PUBLISHED_SHA256, REQUIREMENT, WHEEL
from lib.transforms.pyliverlesionseg import lesion_input, median3, zoom_mask
from lib.transforms.zoom import zoom3d

from .conftest import cli_error


@pytest.mark.parametrize("stage, output", [(LIVER, (1, 28, 1)), (LESION, (4, 12, 2))])
def test_every_convolution_of_the_port_is_the_keras_one(hdf5, stage, output):
    network = GeneralizedUNet(stage.layout)
    load_hdf5_weights(network, hdf5[stage.name])
    x = np.random.default_rng(1).uniform(-0.5, 0.5, network.input_size_for(output)).astype(np.float32)
    differences = verify(network, stage.name, hdf5[stage.name], x)
    assert len(differences) == len(network.keras_order()) + 1
    assert max(differences.values()) < 1e-4, differences


def test_the_windows_are_the_packages():
    liver, lesion = GeneralizedUNet(LIVER.layout), GeneralizedUNet(LESION.layout)
    # what create_unet_like_model prints as the true input size for the package's output sizes
    assert liver.input_size_for(LIVER.output) == (189, 162, 162)
    assert lesion.input_size_for(LESION.output) == (180, 172, 86)
    assert liver.output_size((189, 162, 162)) == LIVER.output and liver.output_size((190, 162, 162)) is None
    with torch.device("meta"):
        assert tuple(lesion(torch.empty(1, 1, 180, 172, 86)).shape[2:]) == LESION.output
    assert set(alignment_pools(LIVER.layout)) == set(alignment_pools(LESION.layout)) == {(1, 1, 1)}


class CentreCrop(torch.nn.Module):
    """A stand-in network whose output is the middle of its input: tiling it must give back the image."""

    channels_last = False

    def __init__(self, margin: tuple[int, int, int]) -> None:
        super().__init__()
        self.margin = margin

    def input_size_for(self, output):
        return tuple(o + 2 * m for o, m in zip(output, self.margin))

    def forward(self, x):
        m = self.margin
        return x[:, :, m[0]: x.shape[2] - m[0], m[1]: x.shape[3] - m[1], m[2]: x.shape[4] - m[2]]


@pytest.mark.parametrize("output, spread", [((6, 7, 4), False), ((6, 7, 4), True), ((5, 8, 3), False)])
def test_windows_are_placed_where_deepvoxnet_places_them(output, spread):
    image = np.random.default_rng(2).normal(size=(17, 15, 9)).astype(np.float32)
    for margin in ((3, 2, 1), (4, 4, 2)):
        assert np.array_equal(predict(CentreCrop(margin), image, output, False, spread=spread), image)
    # one window at the centre; what it does not reach takes the nearest value it gave
    centred = predict(CentreCrop((2, 2, 2)), image, (11, 9, 5), True)
    assert np.array_equal(centred[3:14, 3:12, 2:7], image[3:14, 3:12, 2:7])
    assert np.array_equal(centred[0, 3:12, 2:7], image[3, 3:12, 2:7])


def test_resampling_is_pymircs():
    pymirc_zoom = pytest.importorskip("pymirc.image_operations").zoom3d
    rng = np.random.default_rng(3)
    volume = rng.normal(size=(45, 38, 23))
    for zoom in ((0.52, 0.52, 1.67), (2.0, 0.5, 1.0), (1 / 3, 3.0, 0.3)):
        expected = pymirc_zoom(volume, list(zoom))
        assert np.abs(zoom3d(volume, zoom) - expected).max() < 1e-5
        box = tuple(slice(n // 4, n // 2 + 1) for n in expected.shape)
        assert np.abs(zoom3d(volume, zoom, box) - expected[box]).max() < 1e-5


def test_the_packages_other_steps_are_reproduced_exactly():
    rng = np.random.default_rng(4)
    volume = rng.normal(size=(30, 26, 21)).astype(np.float32)
    assert np.array_equal(median3(volume, workers=3), ndimage.median_filter(volume, size=3))
    for dtype in (np.int16, np.float32):
        mask = np.zeros((40, 30, 20), dtype)
        mask[10:25, 5:20, 4:15] = rng.random((15, 15, 11)) > 0.4
        expected = ndimage.zoom(mask, np.array([97, 70, 51]) / mask.shape, order=1, prefilter=False) > 0
        assert np.array_equal(zoom_mask(mask, (97, 70, 51)), expected)
    # the lesion network's input, computed around the liver only, is the crop of the whole resampled grid
    hu = rng.normal(40, 80, (60, 50, 20)).astype(np.float32)
    liver = np.zeros(hu.shape, bool)
    liver[20:40, 15:35, 6:14] = True
    crop, box, grid = lesion_input(hu, liver, (0.8, 0.8, 2.5), LESION.voxel_mm)
    full = zoom3d(np.clip(hu / 1000, -0.2, 0.2) * 2.5, (0.8, 0.8, 2.5 / 3))
    near = ndimage.binary_dilation(zoom3d(liver.astype(np.float32), (0.8, 0.8, 2.5 / 3)) > 0.5,
                                   structure=ndimage.iterate_structure(ndimage.generate_binary_structure(3, 2), 2))
    assert grid == full.shape and box == ndimage.find_objects(near.astype(np.uint8))[0]
    assert np.abs(crop - np.clip(np.where(near, full, -0.5), -0.5, 0.5)[box]).max() < 1e-6


def test_a_wheel_that_is_not_the_published_one_is_refused(tmp_path):
    (tmp_path / WHEEL).write_bytes(b"not the wheel")
    with pytest.raises(DownloadError, match="SHA-256"):
        cached_wheel(REQUIREMENT, WHEEL, tmp_path, published_sha256=PUBLISHED_SHA256)
    assert not (tmp_path / WHEEL).exists()
    line = cli_error("pyliverlesionseg-model", "--out", tmp_path / "w.pt", "--cache", tmp_path / "c",
                     "--find-links", tmp_path / "nowhere")
    assert "could not download pyliverlesionseg==0.3" in line and not (tmp_path / "w.pt").exists()


def segment(weights: Path, image: Path, tmp_path: Path) -> tuple[nib.Nifti1Image, dict]:
    from lib.configs.pyliverlesionseg import PyLiverLesionSeg

    config = PyLiverLesionSeg()
    config.init("pyliverlesionseg", str(tmp_path / "model"), {"pyliverlesionseg_path": str(weights)}, None)
    label_file, result = config.infer()({"image": str(image), "device": "cpu"})
    label = nib.load(label_file)
    return nib.Nifti1Image(np.asanyarray(label.dataobj), label.affine), {**result, "file": label_file}


def test_on_lits_case_117_in_another_voxel_order_it_finds_the_liver_and_most_lesions(weights, tmp_path):
    """The package's numbers on this real case (liver with tumours 0.90, tumour 0.71, 20 of the 26 lesions of
    10 mm or more, 2 false positives), within 0.01, through the app's InferTask, with the study stored with every
    axis permuted and flipped (ASL): its label comes back in the study's own grid, same shape and affine (a label in
    another voxel order would score far lower). The labels of the case in its own order and in ASL were the same
    voxels (checked once); the package's pipeline costs about 40 s a study whatever its size, so one run stands for
    both."""
    from lib.data.fixtures import lits_fixture, lits_wheel, write_fixture

    fixture = lits_fixture(lits_wheel())
    asl = nib.orientations.ornt_transform(nib.io_orientation(fixture.image.affine),
                                          nib.orientations.axcodes2ornt(tuple("ASL")))
    assert nib.aff2axcodes(fixture.image.affine) != tuple("ASL")
    write_fixture(replace(fixture, image=fixture.image.as_reoriented(asl), label=fixture.label.as_reoriented(asl)),
                  tmp_path)
    image, truth = tmp_path / "lits_117.nii.gz", tmp_path / "truth" / "lits_117.nii.gz"
    label, result = segment(weights, image, tmp_path)
    study = nib.load(image)
    assert nib.aff2axcodes(study.affine) == tuple("ASL")
    assert label.shape == study.shape and np.allclose(label.affine, study.affine, atol=1e-4)
    dice = compare(Path(result["file"]), truth)
    assert dice["whole_liver_dice"] > 0.89 and dice["tumour_dice"] > 0.70, dice
    found = lesion_detection(np.asanyarray(label.dataobj), np.asanyarray(nib.load(truth).dataobj), label.affine)
    ten_mm = [found["found_by_size"][b] for b in ("10 to 20 mm", "20 mm and over")]
    assert sum(b["of"] for b in ten_mm) == 26 and sum(b["found"] for b in ten_mm) >= 19, found
    assert found["false_positives"] <= 4, found
    assert result["tumour_count"] == found["predicted_lesions"]


def test_on_the_totalsegmentator_ct_it_finds_the_liver(weights, shared_data, tmp_path):
    from lib.data.fixtures import totalseg_fixture, write_fixture

    fixture = totalseg_fixture(shared_data)
    write_fixture(fixture, tmp_path)
    label, result = segment(weights, tmp_path / "totalseg_ct.nii.gz", tmp_path)
    dice = compare(Path(result["file"]), tmp_path / "truth" / "totalseg_ct.nii.gz")
    assert dice["whole_liver_dice"] > 0.85, dice  # the package, run on the whole scan: 0.86
    assert result["region"]["cascade"] and "around it" in result["region"]["reason"]
