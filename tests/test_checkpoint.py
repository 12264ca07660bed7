"""Checkpoints of the seed's network in the forms people have them, and clear errors for the rest."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import UNet

from lib.model.checkpoint import CheckpointError, load_network, read_card, save_state_dict
from lib.model.network import build_unet


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_unet().eval()


def same_output(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    x = torch.randn(1, 1, 32, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return torch.allclose(a.eval()(x), b.eval()(x), atol=1e-5)


@pytest.mark.parametrize("form", ["state_dict", "nested_model", "nested_state_dict", "data_parallel"])
def test_state_dict_forms(net, tmp_path, form):
    state = net.state_dict()
    obj = {"state_dict": state, "nested_model": {"model": state, "optimizer": {}, "epoch": 7},
           "nested_state_dict": {"state_dict": state, "epoch": 3},
           "data_parallel": {f"module.{k}": v for k, v in state.items()}}[form]
    torch.save(obj, tmp_path / "ckpt.pt")
    assert same_output(load_network(tmp_path / "ckpt.pt"), net)


def test_torchscript(net, tmp_path):
    torch.jit.script(net).save(str(tmp_path / "model.ts"))
    assert same_output(load_network(tmp_path / "model.ts"), net)


def test_half_precision_save_with_card(net, tmp_path):
    path = save_state_dict(net, tmp_path / "demo.pt", half=True, meta={"trained_on": "phantoms"})
    assert path.stat().st_size < 11 * 2**20
    assert read_card(path) == {"trained_on": "phantoms"}
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        assert torch.allclose(load_network(path)(x), net(x), atol=5e-2)


def test_int8_save_is_half_of_float16_and_labels_as_the_float_network(net, tmp_path):
    """Convolutions as int8 with a scale per output channel (lib/model/int8.py): a file half of float16's, the same
    network back, whose labels differ from the float weights' in few voxels."""
    half = save_state_dict(net, tmp_path / "half.pt", half=True)
    small = save_state_dict(net, tmp_path / "int8.pt", meta={"trained_on": "phantoms"}, int8=True)
    assert small.stat().st_size < 0.55 * half.stat().st_size
    assert read_card(small) == {"trained_on": "phantoms"}
    stored = torch.load(small, weights_only=True)
    assert stored["model.0.conv.unit0.conv.weight"].dtype == torch.int8
    x = torch.randn(1, 1, 32, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        reference, loaded = net(x), load_network(small)(x)
    assert (loaded - reference).abs().max() < 0.02 * reference.abs().max()
    assert (loaded.argmax(1) == reference.argmax(1)).float().mean() > 0.99


def test_int8_model_command_writes_the_card_with_its_origin(net, tmp_path, capsys):
    from lib.cli.main import main

    save_state_dict(net, tmp_path / "model.pt", half=True, meta={"trained_on": "phantoms"})
    assert main(["int8-model", str(tmp_path / "model.pt"), "--out", str(tmp_path / "small.pt")]) == 0
    assert read_card(tmp_path / "small.pt") == {"trained_on": "phantoms", "int8_of": "model.pt"}
    assert torch.load(tmp_path / "small.pt", weights_only=True)["model.0.conv.unit0.conv.weight"].dtype == torch.int8
    assert main(["int8-model", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "x.pt")]) == 2
    assert "no such checkpoint file" in capsys.readouterr().err


def test_an_incompatible_network_names_what_does_not_match(tmp_path):
    other = UNet(3, 1, 2, (16, 32, 64, 128, 256), (2, 2, 2, 2), num_res_units=2)  # 2 classes, instance norm
    torch.save(other.state_dict(), tmp_path / "other.pt")
    with pytest.raises(CheckpointError) as e:
        load_network(tmp_path / "other.pt")
    message = str(e.value)
    assert "other.pt does not fit" in message and "with other shapes" in message
    assert "missing keys" in message  # batch-norm statistics the file does not have


@pytest.mark.parametrize("content, message", [(b"not a checkpoint", "not a PyTorch checkpoint"),
                                              (None, "holds no state dict")])
def test_files_that_are_not_checkpoints(tmp_path, content, message):
    path = tmp_path / "x.pt"
    if content is None:
        torch.save({"epoch": 3, "lr": 0.1}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_network(path)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_network(tmp_path / "missing.pt")


def test_the_app_refuses_to_start_with_an_incompatible_checkpoint(tmp_path):
    # imported here, with the config: the app tests reload `lib` from the app's folder, and the class must match
    from lib.configs.liver_tumor import LiverTumor
    from lib.model.checkpoint import CheckpointError

    torch.save({"model": {"weight": torch.zeros(3)}}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="bad.pt does not fit"):
        LiverTumor().init("liver_tumor", str(tmp_path / "model"), {"pretrained_path": str(tmp_path / "bad.pt")}, None)
    with pytest.raises(ValueError, match="no such file"):
        LiverTumor().init("liver_tumor", str(tmp_path / "model"), {"pretrained_path": str(tmp_path / "nope.pt")}, None)
