"""Two networks as one (lib/model/liver_from.py): the tumour from the first, the liver from the second."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

from lib.data.phantoms import generate_study
from lib.metrics.dice import dice
from lib.model.liver_from import LiverFrom
from lib.model.network import build_unet
from lib.settings import DEMO_CHECKPOINT


class Fixed(torch.nn.Module):
    """A network whose class probabilities are given, voxel by voxel: (3, n) -> logits (1, 3, n, 1, 1)."""

    def __init__(self, probs: list[list[float]]) -> None:
        super().__init__()
        self.logits = torch.log(torch.tensor(probs))[None, :, :, None, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits


def test_tumour_from_the_first_liver_from_the_second():
    # voxels: 0 both say liver; 1 the first says tumour, the second background; 2 the first says background,
    # the second liver (the first network's lost liver comes back); 3 the second says tumour, the first liver
    first = Fixed([[0.1, 0.2, 0.8, 0.1], [0.8, 0.2, 0.1, 0.8], [0.1, 0.6, 0.1, 0.1]])
    second = Fixed([[0.1, 0.9, 0.1, 0.1], [0.8, 0.1, 0.9, 0.1], [0.1, 0.0, 0.0, 0.8]])
    probs = LiverFrom(first, second)(torch.zeros(1, 1, 4, 1, 1)).exp()[0, :, :, 0, 0]
    assert torch.allclose(probs.sum(0), torch.ones(4), atol=1e-4)
    assert probs.argmax(0).tolist() == [1, 2, 1, 1]
    assert torch.allclose(probs[2], torch.tensor([0.1, 0.6, 0.1, 0.1]), atol=1e-5)  # the first's tumour, as it was
    assert abs(float(probs[1, 2]) - 0.9 * 0.9) < 1e-5  # (1 - t) w


def test_it_runs_the_seed_network_in_windows_of_its_size():
    torch.manual_seed(0)
    a, b = build_unet().eval(), build_unet().eval()
    x = torch.rand(1, 1, 32, 32, 32)
    with torch.no_grad():
        out = LiverFrom(a, b)(x)
        t = torch.softmax(a(x), 1)[:, 2]
    assert out.shape == (1, 3, 32, 32, 32)
    assert torch.allclose(out.exp()[:, 2], t, atol=1e-5)


def test_the_app_runs_both_networks_when_asked(tmp_path):
    """liver_model_path: /infer's network is the pair, and its label overlays the image with the liver found."""
    from lib.configs.liver_tumor import LiverTumor  # as the other tests do: MONAI Label's loader may import lib again

    study = generate_study(5, 0, "small")
    image = tmp_path / "study.nii.gz"
    nib.save(study.image, image)
    config = LiverTumor()
    config.init("liver_tumor", str(tmp_path / "model"), {"liver_model_path": str(DEMO_CHECKPOINT)}, None)
    task = config.infer()
    # by name: where MONAI Label's loader imported lib again, the app's class is another object of the same code
    assert type(task._get_network("cpu", {})).__name__ == LiverFrom.__name__
    label_file, result = task({"image": str(image), "device": "cpu"})
    label = nib.load(label_file)
    assert label.shape == study.image.shape and np.allclose(label.affine, study.image.affine, atol=1e-4)
    assert dice(np.asanyarray(label.dataobj) > 0, np.asanyarray(study.label.dataobj) > 0, 1) > 0.8


def test_a_liver_model_that_does_not_load_stops_the_start(tmp_path):
    from lib.configs.liver_tumor import LiverTumor
    from lib.model.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        LiverTumor().init("liver_tumor", str(tmp_path / "model"), {"liver_model_path": str(tmp_path / "x.pt")}, None)
