"""Mixed precision around any MONAI inferer: MONAI's inferers take no autocast option of their own."""

from __future__ import annotations

from typing import Any

import torch
from monai.inferers import Inferer


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
