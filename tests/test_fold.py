"""Batch norm folded into the convolutions: the network computes what it computed, without a norm layer."""

from __future__ import annotations

import torch
from torch.nn.modules.batchnorm import _BatchNorm

from lib.model.checkpoint import load_network
from lib.model.fold import fold_batch_norm
from lib.model.network import build_unet
from lib.settings import DEMO_CHECKPOINT


def _norms(network: torch.nn.Module) -> int:
    return sum(isinstance(m, _BatchNorm) for m in network.modules())


def test_every_norm_of_the_seed_unet_is_folded_and_its_output_kept():
    torch.manual_seed(0)
    network = build_unet(0.2).eval()
    for m in network.modules():  # running statistics far from the identity, as trained ones are
        if isinstance(m, _BatchNorm):
            m.running_mean.uniform_(-2, 2)
            m.running_var.uniform_(0.1, 4)
            m.weight.data.uniform_(0.5, 2)
            m.bias.data.uniform_(-1, 1)
    x = torch.rand(1, 1, 48, 48, 32)
    with torch.no_grad():
        before = network(x)
        assert _norms(network) == 17  # 13 after convolutions, 4 after transposed ones
        folded = fold_batch_norm(network)
        after = folded(x)
    assert folded is network and _norms(folded) == 0 and not folded.training
    assert torch.allclose(after, before, rtol=1e-4, atol=1e-4 * float(before.abs().max()))


def test_the_shipped_model_folded_gives_the_same_labels():
    network = load_network(DEMO_CHECKPOINT, 0.2, "cpu").eval()
    torch.manual_seed(0)
    x = torch.rand(1, 1, 64, 64, 48) * 0.6 + 0.2
    with torch.no_grad():
        before = network(x)
        after = fold_batch_norm(network)(x)
    assert (after - before).abs().max() < 1e-3 * before.abs().max()
    assert torch.equal(after.argmax(1), before.argmax(1))


def test_a_torchscript_network_is_left_as_it_is():
    scripted = torch.jit.script(build_unet(0.0, (4, 8, 16)).eval())
    assert fold_batch_norm(scripted) is scripted
