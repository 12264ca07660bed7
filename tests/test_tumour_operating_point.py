"""The tumour operating point per /infer request: the tumour logit bias and the background filter reach the label
the task returns (the filters' arithmetic is in tests/test_postprocess.py)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from lib.data.phantoms import generate_study
from lib.infers.liver_tumor import LiverTumorInfer
from lib.settings import Settings


class BrightTumourBelowLiver(torch.nn.Module):
    """Liver where the windowed CT is above 0.5 (HU > 84); tumour one logit below liver where it is above 0.75
    (HU > 136: contrast-filled vessels and kidneys), ten below elsewhere."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        liver = (x - 0.5) * 20.0
        return torch.cat([torch.zeros_like(x), liver, liver - 1.0 - 9.0 * (x < 0.75).float()], dim=1)


@pytest.fixture(scope="module")
def task_and_study(tmp_path_factory) -> tuple[LiverTumorInfer, Path]:
    folder = tmp_path_factory.mktemp("operating_point")
    net = folder / "net.ts"
    torch.jit.script(BrightTumourBelowLiver()).save(str(net))
    settings = Settings.from_conf({"pretrained_path": str(net), "spacing": "3", "roi_size": "64", "min_tumour_ml": "0",
                                   "tumour_margin_mm": "1000", "locator_path": "none"})
    path = folder / "study.nii.gz"
    nib.save(generate_study(6, 2, "small", phase="portal_venous").image, path)
    return LiverTumorInfer([str(net)], settings, "test"), path


def run(task: LiverTumorInfer, path: Path, **options) -> tuple[np.ndarray, dict]:
    label_file, result = task({"image": str(path), "device": "cpu", **options})
    out = np.asanyarray(nib.load(label_file).dataobj)
    Path(label_file).unlink()
    return out, result


def test_the_bias_and_the_background_filter_change_what_infer_returns(task_and_study):
    task, path = task_and_study
    plain, result = run(task, path)
    assert "tumours_dropped" not in result                     # no filter, nothing to say
    assert (plain == 2).sum() == 0 and (plain == 1).sum() > 1000
    biased, _ = run(task, path, tumour_logit_bias=2.0)        # the brightest now tumour, the liver still liver
    assert (biased == 2).sum() > 100 and (biased == 1).sum() > 1000
    # every tumour component keeps some background probability, so a limit of 0 drops them all, each voxel to the
    # better of background and liver, which the bias does not touch: the label without the bias
    dropped, result = run(task, path, tumour_logit_bias=2.0, max_tumour_background=0.0)
    assert np.array_equal(dropped, plain)
    # and the result says what went, largest first: the biased tumour, one logit above liver (p = e / (1 + e))
    gone = result["tumours_dropped"]
    volumes = [d["volume_ml"] for d in gone]
    assert volumes and volumes == sorted(volumes, reverse=True) and volumes[-1] > 0
    assert all(abs(d["mean_tumour_probability"] - 0.731) < 0.005 for d in gone), gone   # bf16 on some CPUs
