"""What the strategies rank studies by, from a network and a pre-processed image (shared by the app's scoring and
the label-efficiency benchmark, so that the benchmark measures the app's own strategies), and the uncertainty that
/infer reports from its own forward pass.

- uncertainty: MC-dropout predictive entropy inside and within a margin of the predicted liver, each voxel weighted
  by 1 + TUMOUR_WEIGHT x its mean tumour probability, a weighted mean (a big liver does not win by size alone),
  normalised to 0..1 by ln(3);
- class entropy: per foreground class, the mean entropy over the voxels the model gives to that class or doubts
  about (ClaSP PE's strata);
- embedding: the network's bottleneck features averaged over the study (for diversity between studies);
- image features: an intensity histogram of the body and a coarse thumbnail, no network needed (cold start);
- foreground entropy: the mean entropy of one forward pass over the voxels it labels (/infer's `uncertainty`).
"""

from __future__ import annotations

import copy
import math
import time
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from monai.inferers import SlidingWindowInferer
from monai.networks.layers.simplelayers import SkipConnection
from scipy import ndimage

from ..model.autocast import AutocastInferer, autocast_dtype
from ..model.network import enable_mc_dropout

MARGIN_MM = 10.0
TUMOUR_WEIGHT = 4.0
STRATUM_PROBABILITY = 0.25  # a voxel belongs to a class's stratum when the class wins or has at least this much
THUMBNAIL = 8
HISTOGRAM_BINS = 16


def bottleneck(network: torch.nn.Module) -> torch.nn.Module:
    """The deepest block of a MONAI UNet: the submodule of its innermost skip connection."""
    skips = [m for m in network.modules() if isinstance(m, SkipConnection)]
    if not skips:
        raise ValueError("the network has no skip connection: not a MONAI UNet")
    return skips[-1].submodule


def normalised_entropy(mean: np.ndarray) -> np.ndarray:
    """mean: (classes, X, Y, Z) mean softmax. Each voxel's entropy divided by log(classes): 0 sure, 1 a coin toss."""
    return -(mean * np.log(np.clip(mean, 1e-8, 1.0))).sum(0) / math.log(mean.shape[0])


def tumour_weighted_uncertainty(mean: np.ndarray, spacing: Sequence[float]) -> float:
    """mean: (classes, X, Y, Z) mean softmax of the dropout passes."""
    entropy = normalised_entropy(mean)
    liver = mean.argmax(0) > 0
    region = (ndimage.distance_transform_edt(~liver, sampling=spacing) <= MARGIN_MM) if liver.any() \
        else np.ones_like(liver)
    weight = (1.0 + TUMOUR_WEIGHT * mean[2]) * region
    return float((entropy * weight).sum() / max(float(weight.sum()), 1e-8))


def class_entropy(mean: np.ndarray) -> dict[str, float]:
    """mean: (3, X, Y, Z) mean softmax. Per foreground class, the mean normalised entropy over its stratum: the voxels
    where it wins or has at least STRATUM_PROBABILITY (0 where there are none). The tumour stratum is where the
    model sees or suspects tumour, however little of it it predicts."""
    entropy = normalised_entropy(mean)
    winner = mean.argmax(0)
    out = {}
    for name, c in (("liver", 1), ("tumour", 2)):
        stratum = (winner == c) | (mean[c] >= STRATUM_PROBABILITY)
        out[name] = round(float(entropy[stratum].mean()), 6) if stratum.any() else 0.0
    return out


def mc_dropout_signals(x: torch.Tensor, network: torch.nn.Module, samples: int, spacing: Sequence[float],
                       roi: Sequence[int], device: str, seed: int = 0,
                       before_layer: Callable[[], None] | None = None) -> dict:
    """x: (1, 1, X, Y, Z) pre-processed image. Dropout masks are seeded: the same study and model give the same
    scores. before_layer: called ahead of every layer's forward pass (it may wait, so that other work goes first,
    or raise to stop). Returns the score, the class entropies, the embedding, and the predicted liver and tumour
    volumes."""
    start = time.time()
    net = enable_mc_dropout(copy.deepcopy(network).to(device))
    if before_layer is not None:
        for module in net.modules():
            module.register_forward_pre_hook(lambda _m, _i: before_layer())
    features: list[torch.Tensor] = []
    hook = bottleneck(net).register_forward_hook(lambda _m, _i, out: features.append(out.float().mean((2, 3, 4))))
    dtype = autocast_dtype(device, True, cpu_bf16=True)
    inferer = AutocastInferer(SlidingWindowInferer(roi_size=list(roi), overlap=0.0, sw_batch_size=1),
                              torch.device(device).type, dtype)
    state = torch.get_rng_state()
    torch.manual_seed(seed)
    try:
        with torch.no_grad():
            mean = sum(torch.softmax(inferer(x.to(device), net).float(), dim=1) for _ in range(samples)) / samples
    finally:
        torch.set_rng_state(state)
        hook.remove()
    mean = mean[0].cpu().numpy()
    embedding = torch.cat(features).mean(0)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    label = mean.argmax(0)
    return {
        "score": round(tumour_weighted_uncertainty(mean, spacing), 6),
        "class_entropy": class_entropy(mean),
        "embedding": [round(v, 5) for v in F.normalize(embedding, dim=0).tolist()],
        "predicted_liver_ml": round(float((label > 0).sum()) * voxel_ml, 1),
        "predicted_tumour_ml": round(float((label == 2).sum()) * voxel_ml, 2),
        "samples": samples,
        "seconds": round(time.time() - start, 2),
    }


def image_features(x: torch.Tensor) -> list[float]:
    """x: (1, X, Y, Z) windowed image in 0..1. A histogram of the soft-tissue window inside the body (contrast
    phase, fatty liver, noise) and a THUMBNAIL^3 thumbnail (anatomy, field of view), each scaled to unit length."""
    v = x.float()[0]
    body = v[v > 0]
    hist = torch.histc(body, bins=HISTOGRAM_BINS, min=0.0, max=1.0) if body.numel() else torch.zeros(HISTOGRAM_BINS)
    thumb = F.adaptive_avg_pool3d(v[None, None], THUMBNAIL).flatten()
    return [round(t, 5) for t in torch.cat([F.normalize(hist, dim=0), F.normalize(thumb, dim=0)]).tolist()]


def foreground_entropy(logits: torch.Tensor, labels: torch.Tensor) -> float | None:
    """The model's uncertainty from the same forward pass: the mean entropy of the class probabilities over the
    voxels it labels liver or tumour, divided by log(classes) so that 0 is certain and 1 is a coin toss. None when
    it labels nothing."""
    foreground = labels > 0
    if not bool(foreground.any()):
        return None
    p = torch.softmax(logits[:, foreground].float(), dim=0)
    entropy = -(p * torch.log(p.clamp_min(1e-12))).sum(0) / math.log(logits.shape[0])
    return round(float(entropy.mean()), 4)
