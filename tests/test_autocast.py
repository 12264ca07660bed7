"""Training precision: the autocast type a training step runs under gives the gradient float32 gives, to bf16's
rounding, at every crop size (a CPU's bf16 gradient is wrong where an input is 2 voxels deep: lib.model.autocast)."""

from __future__ import annotations

import pytest
import torch

from lib.model.autocast import level_depths, training_dtype
from lib.model.network import STRIDES, build_unet


def test_level_depths_follow_the_unet_strides():
    assert level_depths(32, STRIDES) == [32, 16, 8, 4, 2]
    assert level_depths(96, STRIDES) == [96, 48, 24, 12, 6]
    assert level_depths(40, STRIDES[:3]) == [40, 20, 10, 5]


@pytest.mark.parametrize("crop", [32, 48])
def test_a_training_step_gets_float32_gradients_within_rounding(crop):
    """Every convolution's weight gradient within 50% of float32's (bf16 rounding through a fresh network: 10-20%;
    the wrong one: about 100%, at times NaN)."""
    torch.manual_seed(0)
    net = build_unet(0.0, (4, 8, 16, 32, 64)).train()
    x = torch.randn(2, 1, crop, crop, crop)
    y = torch.randint(0, 3, (2, crop, crop, crop))

    def gradients(dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
        net.zero_grad()
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            out = net(x)
        torch.nn.functional.cross_entropy(out.float(), y).backward()
        return {n: p.grad.clone() for n, p in net.named_parameters() if p.dim() == 5}

    exact, used = gradients(None), gradients(training_dtype("cpu", False, True, crop, STRIDES))
    errors = {n: ((used[n] - exact[n]).norm() / exact[n].norm()).nan_to_num(float("inf")).item() for n in exact}
    assert max(errors.values()) < 0.5, sorted(errors.items(), key=lambda e: -e[1])[:3]
