"""The small-lesion probe (`liver-tumor bench probe`): its crops and what it counts, with networks whose answers are
known, and the command on sample studies with a real checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import ndimage

from lib.bench.lesion_probe import AWAY_VOXELS, BORDER_VOXELS, ProbeConfig, make_crops, probe
from lib.cli.main import main
from lib.data.labelled import labelled_studies
from lib.metrics.lesions import LIVER, TUMOUR
from lib.model.checkpoint import save_state_dict
from lib.model.network import build_unet
from tests.conftest import ROOT, run_cli

STUDIES = ROOT / "sample-data"
CFG = ProbeConfig(crops=6, crop_mm=96.0, spacing=3.0, studies=3, seed=7)  # 32-voxel crops


def _cases() -> list:
    return labelled_studies(STUDIES, None)[:3]


@pytest.fixture(scope="module")
def crops():
    return make_crops(_cases(), CFG, progress=lambda m: None)


class Always(torch.nn.Module):
    """Logits that make one class win in every voxel."""

    def __init__(self, cls: int) -> None:
        super().__init__()
        self.cls = cls

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(x.shape[0], 3, *x.shape[2:])
        out[:, self.cls] = 10.0
        return out


def test_each_crop_holds_one_painted_lesion_clear_of_its_edge(crops):
    assert len(crops) == CFG.crops and {c.study for c in crops} == {c[0] for c in _cases()}
    for c in crops:
        assert c.image.shape == c.label.shape == c.lesion.shape == (CFG.crop_voxels,) * 3
        assert 0 <= c.image.min() and c.image.max() <= 1
        assert c.lesion.any() and (c.label[c.lesion] == TUMOUR).all()
        assert ndimage.label(c.lesion, structure=np.ones((3, 3, 3)))[1] == 1
        inner = c.lesion[(slice(BORDER_VOXELS, -BORDER_VOXELS),) * 3]
        assert inner.sum() == c.lesion.sum()
        # measured smaller than drawn (partial volume), never larger than the largest drawn plus a voxel
        assert 0 < c.diameter_mm <= CFG.size_mm[1] + CFG.spacing
        assert c.visible == (c.diameter_mm >= 10 and c.contrast_hu is not None and abs(c.contrast_hu) >= 10)


def test_the_crops_are_the_seeds(crops):
    again = make_crops(_cases(), CFG, progress=lambda m: None)
    assert all(np.array_equal(a.image, b.image) and np.array_equal(a.lesion, b.lesion) for a, b in zip(crops, again))
    other = make_crops(_cases(), ProbeConfig(**{**CFG.__dict__, "seed": 8}), progress=lambda m: None)
    assert not all(np.array_equal(a.lesion, b.lesion) for a, b in zip(crops, other))


def test_a_network_calling_everything_tumour_finds_all_and_its_false_tumour_is_the_clean_liver(crops):
    everywhere = probe(Always(TUMOUR), crops, CFG)
    assert everywhere["found"] == everywhere["lesions"] == len(crops)
    assert everywhere["visible_found"] == everywhere["visible"] == sum(c.visible for c in crops)
    clean = [(c.label == LIVER) & ~ndimage.binary_dilation(c.label == TUMOUR, iterations=AWAY_VOXELS) for c in crops]
    assert everywhere["false_tumour_ml_per_crop"] == pytest.approx(
        sum(m.sum() for m in clean) * CFG.spacing**3 / 1000 / len(crops), abs=1e-3)
    assert everywhere["false_tumour_ml_per_crop"] > 0
    assert sum(v[1] for v in everywhere["visible_by_kind"].values()) == everywhere["visible"]

    nowhere = probe(Always(LIVER), crops, CFG)
    assert nowhere["found"] == nowhere["visible_found"] == 0 and nowhere["false_tumour_ml_per_crop"] == 0
    assert max(nowhere["max_tumour_p"]) < 1e-3


def test_bench_probe_compares_checkpoints_on_the_same_crops(tmp_path):
    paths = []
    for name in ("a", "b"):
        torch.manual_seed(len(paths))
        paths.append(save_state_dict(build_unet(0.2), tmp_path / f"{name}.pt", meta={"spacing_mm": [3.0] * 3}))
    proc = run_cli("bench", "probe", "--studies", STUDIES, "--pretrained", *paths, "--crops", "3",
                   "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr[-1500:]
    result = json.loads(proc.stdout)
    assert result["config"]["spacing"] == 3.0 and len(result["crops"]) == 3
    assert set(result["models"]) == {"a", "b"}
    for m in result["models"].values():
        assert m["lesions"] == 3 and len(m["max_tumour_p"]) == 3 and 0 <= m["visible_found"] <= m["visible"]
    assert result["models"]["a"]["max_tumour_p"] != result["models"]["b"]["max_tumour_p"]
    assert json.loads((tmp_path / "out" / "probe.json").read_text()) == result
    assert (tmp_path / "out" / "probe.png").stat().st_size > 10_000


def test_bench_probe_refuses_what_it_cannot_measure(tmp_path, capsys):
    """In this process, through the command's entry point: each refusal is one line, before any study is read."""
    a = save_state_dict(build_unet(0.2), tmp_path / "a.pt", meta={"spacing_mm": [3.0] * 3})
    b = save_state_dict(build_unet(0.2), tmp_path / "b.pt", meta={"spacing_mm": [1.0] * 3})
    c = save_state_dict(build_unet(0.2), tmp_path / "c.pt", meta={"spacing_mm": [1.0, 1.0, 2.0]})

    def refusal(*args) -> str:
        assert main(["bench", "probe", "--studies", str(STUDIES), "--out", str(tmp_path / "out"), *map(str, args)]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and "error" in lines[0], lines
        return lines[0]

    line = refusal("--pretrained", a, b)
    assert "different spacings" in line and "--spacing" in line
    assert "one spacing on every axis" in refusal("--pretrained", c)
    assert "--size-mm 15 10" in refusal("--pretrained", a, "--size-mm", "15", "10")
    assert "--spacing 0" in refusal("--pretrained", a, "--spacing", "0")
    assert "no such checkpoint" in refusal("--pretrained", tmp_path / "none.pt")
    assert not (tmp_path / "out").exists()
