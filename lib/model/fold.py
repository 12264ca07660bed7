"""Batch norm folded into the convolution before it, for inference: the same outputs (to float rounding) with one
layer less in every block.

PyTorch folds one pair (`torch.nn.utils.fusion.fuse_conv_bn_eval`, used here); its FX fuser
(`torch.fx.experimental.optimization.fuse`) folds plain convolutions only (13 of the UNet's 17 norms, none after a
transposed convolution) and gives a graph module in place of the network. The walk over MONAI's blocks (the norm
inside `ADN`, after the convolution) is written here.
"""

from __future__ import annotations

import torch
from monai.networks.blocks import ADN, Convolution
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils.fusion import fuse_conv_bn_eval


def fold_batch_norm(network: torch.nn.Module) -> torch.nn.Module:
    """`network` in evaluation mode, every MONAI Convolution whose ADN applies batch norm first (the default order,
    "NDA") with that norm folded into its convolution and replaced by an identity; in place. A TorchScript module
    (a Clara or bundle checkpoint) is returned as it is."""
    network.eval()
    if isinstance(network, torch.jit.ScriptModule):
        return network
    for block in network.modules():
        if not isinstance(block, Convolution) or not isinstance(getattr(block, "adn", None), ADN):
            continue
        first = next(iter(block.adn.children()), None)
        if isinstance(first, _BatchNorm) and first.track_running_stats and getattr(block.adn, "N", None) is first:
            transposed = isinstance(block.conv, torch.nn.modules.conv._ConvTransposeNd)
            block.conv = fuse_conv_bn_eval(block.conv, first, transpose=transposed)
            block.adn.N = torch.nn.Identity()
    return network
