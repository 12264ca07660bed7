"""The seed model's network: MONAI's 3D UNet, 1 input channel, 3 classes (background, liver, tumour)."""

from __future__ import annotations

import torch
from monai.networks.layers import Norm
from monai.networks.nets import UNet

CHANNELS = (16, 32, 64, 128, 256)
STRIDES = (2, 2, 2, 2)
LABELS = {"liver": 1, "tumour": 2}
NUM_CLASSES = 3


def build_unet(dropout: float = 0.2, channels: tuple[int, ...] = CHANNELS) -> UNet:
    """The seed's UNet; other channels only for benchmarks that must run small (the app always uses CHANNELS)."""
    return UNet(spatial_dims=3, in_channels=1, out_channels=NUM_CLASSES, channels=channels,
                strides=STRIDES[:len(channels) - 1], num_res_units=2, norm=Norm.BATCH, dropout=dropout)


def enable_mc_dropout(network: torch.nn.Module) -> torch.nn.Module:
    """Evaluation mode with dropout left on: batch norm keeps its running statistics (Monte Carlo dropout)."""
    network.eval()
    for m in network.modules():
        if isinstance(m, (torch.nn.Dropout, torch.nn.Dropout3d, torch.nn.Dropout2d, torch.nn.AlphaDropout)):
            m.train()
    return network
