"""The second reader: its trees against hand-computed answers, candidates and their measurements on a hand-made
volume, and through the InferTask with the shipped lesion network and reader (its accuracy: docs/model-log.md)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from scipy import ndimage

import lib.reader.transform as reader_transform
from lib.errors import ModelUnavailable
from lib.infers.liver_tumor import LiverTumorInfer
from lib.reader.candidates import EDGE_MM, FEATURES, candidates, measurements
from lib.reader.lesion_network import build_lesion_unet, lesion_input, transposed_as_plain
from lib.reader.trees import Trees
from lib.settings import Settings

F = {name: i for i, name in enumerate(FEATURES)}


def write_trees(path: Path, init: float, rate: float, trees: list[dict]) -> Path:
    path.write_text(json.dumps({"features": list(FEATURES), "init": init, "rate": rate, "trees": trees}))
    return path


def stump(feature: str, threshold: float, low: float, high: float) -> dict:
    return {"left": [1, -1, -1], "right": [2, -1, -1], "feature": [F[feature], -2, -2],
            "threshold": [threshold, -2.0, -2.0], "value": [0.0, low, high]}


def test_trees_add_their_leaves_and_give_a_probability(tmp_path):
    trees = Trees(write_trees(tmp_path / "r.json", -1.0, 0.5, [stump("contrast", -10.0, 2.0, -2.0),
                                                                stump("log_ml", 0.0, -1.0, 3.0)]))
    x = np.zeros((3, len(FEATURES)))
    x[:, F["contrast"]] = [-30.0, -30.0, 5.0]
    x[:, F["log_ml"]] = [-0.5, 1.0, 1.0]
    raw = np.array([-1 + 0.5 * (2 - 1), -1 + 0.5 * (2 + 3), -1 + 0.5 * (-2 + 3)])
    assert np.allclose(trees.probability(x), 1 / (1 + np.exp(-raw)))


def test_a_reader_of_other_features_is_refused(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"features": ["log_ml"], "init": 0, "rate": 1, "trees": []}))
    with pytest.raises(ValueError, match="features"):
        Trees(path)


def ball(shape: tuple[int, int, int], centre: tuple[int, int, int], radius: float) -> np.ndarray:
    grid = np.indices(shape)
    return sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius ** 2


def test_candidates_are_the_union_near_the_liver_and_are_measured_on_the_ct():
    shape, spacing = (80, 80, 60), np.array([1.0, 1.0, 1.0])
    label = np.zeros(shape, np.uint8)
    label[10:70, 10:70, 10:50] = 1
    ct = np.full(shape, 100.0, np.float32)
    shipped = ball(shape, (30, 30, 30), 6)            # the model's tumour: 60 HU, 40 under the liver
    label[shipped], ct[shipped] = 2, 60.0
    prob = np.zeros(shape, np.float32)
    network = ball(shape, (50, 50, 30), 5)            # the lesion network's alone, inside the liver
    prob[network] = 0.9
    prob[ball(shape, (50, 20, 20), 2)] = 0.9          # too small: 33 voxels, 0.03 mL
    prob[75:80, 75:80, 0:20] = 0.9                    # far from the liver: not a candidate
    parts = candidates(label, prob, spacing)
    assert parts.max() == 2
    assert {int(parts[30, 30, 30]), int(parts[50, 50, 30])} == {1, 2}
    x = measurements(ct, label, prob, parts, spacing)
    first, second = x[parts[30, 30, 30] - 1], x[parts[50, 50, 30] - 1]
    assert first[F["shipped_frac"]] == 1 and second[F["shipped_frac"]] == 0
    assert first[F["contrast"]] == pytest.approx(-40) and second[F["contrast"]] == pytest.approx(0)
    assert first[F["ring_hu"]] == 100 and first[F["liver_hu"]] == 100
    assert 10 ** first[F["log_ml"]] == pytest.approx(shipped.sum() / 1000)
    assert first[F["p_max"]] == 0 and second[F["p_mean"]] == pytest.approx(0.9)
    assert first[F["edge_frac"]] == 0 and first[F["elongation"]] == pytest.approx(1, abs=0.05)


def test_edge_share_is_that_of_the_whole_liver_though_measured_in_each_candidates_box():
    """Candidates at the liver's edge, at a corner and deep in a liver much larger than their boxes: the share
    within EDGE_MM of the edge is what the whole liver's distance map gives."""
    shape, spacing = (120, 100, 40), np.array([0.8, 0.8, 2.5])
    label = np.zeros(shape, np.uint8)
    label[5:115, 8:92, 3:37] = 1
    for centre, radius in (((9, 50, 20), 6), ((60, 50, 20), 7), ((110, 88, 34), 5)):
        label[ball(shape, centre, radius) & (label > 0)] = 2
    ct = np.where(label == 2, 60.0, 100.0).astype(np.float32)
    parts = candidates(label, np.zeros(shape, np.float32), spacing)
    assert parts.max() == 3
    depth = ndimage.distance_transform_edt(label > 0, sampling=spacing)
    expected = [(depth[parts == i] <= EDGE_MM).mean() for i in range(1, 4)]
    shares = measurements(ct, label, np.zeros(shape, np.float32), parts, spacing)[:, F["edge_frac"]]
    assert np.array_equal(shares, expected)
    assert expected[1] == 0 and 0 < expected[0] < 1 and 0 < expected[2] < 1  # deep in the liver; at edges


def test_the_lesion_network_computes_the_same_with_plain_convolutions():
    torch.manual_seed(0)
    net = build_lesion_unet().eval()
    for m in net.modules():  # batch norm statistics away from 0 and 1, so that the layers' order shows
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    x = torch.rand(1, 1, 32, 40, 24)
    with torch.no_grad():
        before = net(x)
        transposed = [m for m in net.modules() if isinstance(m, torch.nn.ConvTranspose3d)]
        plain = transposed_as_plain(net)
        after = plain(x)
    left = [m.stride for m in plain.modules() if isinstance(m, torch.nn.ConvTranspose3d)]
    assert (1, 1, 1) in [m.stride for m in transposed] and left and (1, 1, 1) not in left
    assert torch.allclose(before, after, atol=1e-5) and before.abs().max() > 0.1


class BrightTumour(torch.nn.Module):
    """Liver where the windowed CT is above 0.5 (HU > 84), tumour where it is above 0.75 (HU > 136)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        liver = (x - 0.5) * 20.0
        return torch.cat([torch.zeros_like(x), liver, liver + 1.0 - 9.0 * (x < 0.75).float()], dim=1)


@pytest.fixture(scope="module")
def task_and_study(tmp_path_factory) -> tuple[LiverTumorInfer, Path]:
    """The toy network and a small study: a liver of 100 HU in fat, with a bright ball (the toy's tumour) and a
    dark one (what a lesion network may call tumour), on a left-right flipped grid of 2 x 2 x 2.5 mm."""
    folder = tmp_path_factory.mktemp("second_reader")
    net = folder / "net.ts"
    torch.jit.script(BrightTumour()).save(str(net))
    settings = Settings.from_conf({"pretrained_path": str(net), "spacing": "3", "roi_size": "64", "min_tumour_ml": "0",
                                   "tumour_margin_mm": "1000", "locator_path": "none"})
    shape = (64, 64, 40)
    ct = np.full(shape, -100.0, np.float32)
    ct[12:52, 14:50, 8:32] = 100.0
    ct[ball(shape, (24, 30, 20), 4)] = 160.0
    ct[ball(shape, (40, 36, 18), 5)] = 40.0
    ct += np.random.default_rng(0).normal(0, 5, shape).astype(np.float32)
    path = folder / "study.nii.gz"
    nib.save(nib.Nifti1Image(ct, np.diag([-2.0, 2.0, 2.5, 1.0])), path)
    return LiverTumorInfer([str(net)], settings, "test"), path


def run(task: LiverTumorInfer, path: Path, **options) -> tuple[np.ndarray, dict]:
    label_file, result = task({"image": str(path), "device": "cpu", **options})
    image, label = nib.load(path), nib.load(label_file)
    assert label.shape == image.shape and np.allclose(label.affine, image.affine)
    out = np.asanyarray(label.dataobj)
    Path(label_file).unlink()
    return out, result


def test_the_reader_keeps_the_candidates_it_scores_at_the_threshold_or_more(task_and_study):
    task, path = task_and_study
    plain, result = run(task, path)
    assert "second_reader" not in result and (plain == 2).sum() > 100
    everything, result = run(task, path, second_reader=True, second_reader_threshold=0.0)
    read = result["second_reader"]
    assert read["kept"] == read["candidates"] == len(read["scores"]) > 0
    kept_by_size = candidates(plain, np.zeros(plain.shape, np.float32), np.array([2.0, 2.0, 2.5])) > 0
    assert kept_by_size.any() and (everything[kept_by_size] == 2).all()   # the model's tumours of 0.25 mL or more
    assert ((everything > 0) | (plain == 0)).all()              # the liver the model found stays
    assert (everything[(everything > 0) & (plain == 0)] == 2).all()  # beyond it, only the candidates kept
    none, result = run(task, path, second_reader=True, second_reader_threshold=1.0)
    assert result["second_reader"]["kept"] == 0
    assert np.array_equal(none, (plain > 0).astype(none.dtype))   # every tumour read out, into the liver


def test_a_missing_reader_says_which_file_and_option(task_and_study, tmp_path):
    task, path = task_and_study
    settings = Settings.from_conf({"pretrained_path": task.settings.pretrained_path, "spacing": "3", "roi_size": "64",
                                   "locator_path": "none", "second_reader_path": str(tmp_path)})
    bare = LiverTumorInfer([task.settings.pretrained_path], settings, "test")
    with pytest.raises(ModelUnavailable, match="no lesion_net.pt in .*second_reader_path"):
        bare({"image": str(path), "device": "cpu", "second_reader": True})


@pytest.mark.parametrize("spacing, shared", [("1", True), ("3", False)])
def test_the_lesion_network_reuses_the_models_input_only_when_made_alike(task_and_study, monkeypatch, spacing,
                                                                         shared):
    """At the lesion network's 1 mm (and its smoothing) the model's own input is handed over, and it is what the
    lesion network would have made from the region's CT; at any other spacing it makes its own."""
    task, path = task_and_study
    settings = Settings.from_conf({"pretrained_path": task.settings.pretrained_path, "spacing": spacing,
                                   "roi_size": "64", "locator_path": "none"})
    given = []
    made = reader_transform.lesion_probability

    def spy(ct, region, net, dtype, image=None):
        given.append((image, lesion_input(ct)))
        return made(ct, region, net, dtype, image)

    monkeypatch.setattr(reader_transform, "lesion_probability", spy)
    label, result = run(LiverTumorInfer([task.settings.pretrained_path], settings, "test"), path, second_reader=True)
    assert result["second_reader"]["candidates"] > 0 and len(given) == 1
    image, own = given[0]
    if shared:
        assert image is not None and image.shape == own.shape and torch.equal(image.as_tensor(), own.as_tensor())
        assert np.allclose(image.affine, own.affine)
    else:
        assert image is None
