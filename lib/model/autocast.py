"""Mixed precision around any MONAI inferer: MONAI's inferers take no autocast option of their own."""

from __future__ import annotations

import functools
import logging
import math
from typing import Any, Sequence

import torch
from monai.inferers import Inferer

logger = logging.getLogger(__name__)


def cpu_has_bf16() -> bool:
    """AVX-512 BF16 or AMX: where oneDNN runs bfloat16 convolutions natively (elsewhere they are emulated, slower)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def autocast_dtype(device: str | torch.device, amp: bool, cpu_bf16: bool = False) -> torch.dtype | None:
    """float16 on CUDA when amp is on; bfloat16 on the CPU when asked and the CPU has it."""
    kind = torch.device(device).type
    if kind == "cuda" and amp:
        return torch.float16
    if kind == "cpu" and cpu_bf16 and cpu_has_bf16():
        return torch.bfloat16
    return None


def level_depths(size: int, strides: Sequence[int]) -> list[int]:
    """The input's depth at each level of MONAI's UNet (its stride-s, kernel-3, padding-1 convolutions: ceil(n/s))."""
    depths = [size]
    for s in strides:
        depths.append(math.ceil(depths[-1] / s))
    return depths


@functools.lru_cache(maxsize=None)
def cpu_bf16_depth_2_gradient_wrong() -> bool:
    """Whether oneDNN's bfloat16 weight gradient of a 3x3x3 stride-1 convolution whose input is 2 voxels deep is
    wrong on this CPU. On the 2-core AMD EPYC machines this project runs on (torch 2.14.1) it is garbage, different
    on every call and at times NaN (relative error about 1; every other depth, stride and transposed convolution
    within 0.3% of float32), which broke tiny training runs with a NaN loss. Probed once per process: one such
    gradient against float32's."""
    if not cpu_has_bf16():
        return False
    generator = torch.Generator().manual_seed(0)
    conv = torch.nn.Conv3d(8, 16, 3, padding=1)
    x = torch.randn(2, 8, 2, 4, 4, generator=generator)
    grad = torch.randn(2, 16, 2, 4, 4, generator=generator)
    conv(x).backward(grad)
    exact = conv.weight.grad.clone()
    for _ in range(2):  # a wrong result is different every time: two tries to catch it
        conv.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = conv(x)
        out.backward(grad.to(out.dtype))
        error = ((conv.weight.grad - exact).norm() / exact.norm()).item()
        if not error < 0.05:
            return True
    return False


def training_dtype(device: str | torch.device, amp: bool, cpu_bf16: bool, crop_size: int,
                   strides: Sequence[int]) -> torch.dtype | None:
    """autocast_dtype for training steps on crops of crop_size (bfloat16 only ever on the CPU): float32 instead where a
    level of the network sees a depth of 2 and this CPU's bf16 gradient there is wrong."""
    dtype = autocast_dtype(device, amp, cpu_bf16)
    if dtype is torch.bfloat16 and 2 in level_depths(crop_size, strides) and cpu_bf16_depth_2_gradient_wrong():
        logger.warning("training in float32, not bfloat16: crops of %d reach a depth of 2 in the network, where "
                       "this CPU's bfloat16 convolution gradient is wrong", crop_size)
        return None
    return dtype


class AutocastInferer(Inferer):
    """Runs `inner` under torch.autocast and hands back float32."""

    def __init__(self, inner: Inferer, device_type: str, dtype: torch.dtype | None) -> None:
        super().__init__()
        self.inner, self.device_type, self.dtype = inner, device_type, dtype

    def __call__(self, inputs: torch.Tensor, network: Any, *args: Any, **kwargs: Any):
        if self.dtype is None:
            return self.inner(inputs, network, *args, **kwargs)
        with torch.autocast(self.device_type, dtype=self.dtype):
            out = self.inner(inputs, network, *args, **kwargs)
        return out.float()
