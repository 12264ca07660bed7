"""How a training run validates: sliding windows fitted to each volume, on the averaged weights (or the network
inside DistributedDataParallel), and Dice per class."""

from __future__ import annotations

from typing import Any

import torch
from monai.handlers import from_engine
from monai.inferers import Inferer, SlidingWindowInferer

from .. import distributed
from ..transforms.preprocess import fitted_roi
from .averaging import WeightAverage


class FittedWindows(Inferer):
    """Sliding windows shrunk to each volume, as at inference (`fit_windows`): a volume smaller than the largest
    window is not padded up to it, a larger one takes as many windows per axis with fewer voxels."""

    def __init__(self, roi: tuple[int, int, int], overlap: float) -> None:
        super().__init__()
        self.roi, self.overlap = roi, overlap

    def __call__(self, inputs: torch.Tensor, network: Any, *args: Any, **kwargs: Any):
        roi = fitted_roi(inputs.shape[2:], self.roi, self.overlap)
        return SlidingWindowInferer(roi_size=roi, overlap=self.overlap, sw_batch_size=1, mode="gaussian")(
            inputs, network, *args, **kwargs)


class Validated(Inferer):
    """Runs `inner` on the averaged weights when there are (lib.trainers.averaging), else on the network inside
    DistributedDataParallel: validation needs no gradient sync, and ranks may hold different numbers of studies."""

    def __init__(self, inner: Inferer, average: WeightAverage | None) -> None:
        super().__init__()
        self.inner, self.average = inner, average

    def __call__(self, inputs: torch.Tensor, network: Any, *args: Any, **kwargs: Any):
        net = self.average.module if self.average is not None else distributed.unwrap(network)
        return self.inner(inputs, net, *args, **kwargs)


class SelectClass:
    """Output transform for a per-class Dice: channel c of the one-hot predictions and labels."""

    def __init__(self, c: int) -> None:
        self.c = c

    def __call__(self, output):
        preds, labels = from_engine(["pred", "label"])(output)
        return [p[self.c : self.c + 1] for p in preds], [y[self.c : self.c + 1] for y in labels]
