"""Weights kept as int8 with one scale per output channel: a checkpoint at half the size of float16's.

Only the file shrinks: `dequantize` gives float weights back, and the network loads and runs as before. Written here
because torch's quantized tensors (`torch.quantize_per_channel`) are deprecated, and torch.ao's quantization swaps the
modules for int8 kernels, which is not what is wanted: the same network, smaller on disk.
"""

from __future__ import annotations

import torch

SCALE = ".int8_scale"  # the key of a weight's scales: the weight's key with this appended


def quantize(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every floating weight of two or more dimensions (convolutions) as int8, symmetric, scaled per output channel;
    biases and batch-norm statistics (few, and sensitive) as float16."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if value.is_floating_point() and value.ndim >= 2:
            w = value.detach().float().cpu()
            scale = w.abs().flatten(1).amax(1).clamp_min(torch.finfo(torch.float32).tiny) / 127.0
            shape = (-1,) + (1,) * (w.ndim - 1)
            out[key] = torch.round(w / scale.view(shape)).clamp(-127, 127).to(torch.int8)
            out[key + SCALE] = scale
        else:
            out[key] = value.detach().cpu().half() if value.is_floating_point() else value.detach().cpu()
    return out


def dequantize(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The float weights of a state dict from `quantize`; any other state dict is returned as it is."""
    scales = {key[: -len(SCALE)]: value for key, value in state.items() if key.endswith(SCALE)}
    if not scales:
        return state
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.endswith(SCALE):
            continue
        if key in scales:
            value = value.float() * scales[key].float().view((-1,) + (1,) * (value.ndim - 1))
        out[key] = value
    return out
