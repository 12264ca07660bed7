"""How a training run validates: on the region inference would segment (the liver and the cascade's margin around
it), sliding windows fitted to each volume, on the averaged weights (or the network inside DistributedDataParallel),
Dice per class, and the tumour's global Dice and lesion detection (as LiTS scores them, lib.metrics.lesions) on the
working grid."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np
import torch
from ignite.metrics import Metric, MetricsLambda
from ignite.metrics.metric import reinit__is_reduced, sync_all_reduce
from monai.handlers import from_engine
from monai.inferers import Inferer, SlidingWindowInferer
from monai.transforms import CropForegroundd, MapTransform

from .. import distributed
from ..metrics.lesions import lesion_detection
from ..transforms.postprocess import CleanUp
from ..transforms.preprocess import fitted_roi
from .averaging import WeightAverage


class LiverRegiond(MapTransform):
    """The image and label cropped to the labelled liver's box widened by margin_mm, as the cascade crops a study
    to the located liver before the full-resolution stage (lib.cascade): validation then measures what /infer
    returns, and costs what it does (a quarter of a body-cropped study at 1 mm). The box comes from the label here,
    where the cascade has its locator's. A label without liver keeps the whole volume (MONAI's crop would empty it)."""

    def __init__(self, keys: tuple[str, str], spacing: tuple[float, ...], margin_mm: float) -> None:
        super().__init__(keys)
        margin = [int(np.ceil(margin_mm / s)) for s in spacing]
        self.label_key = keys[1]
        self.crop = CropForegroundd(keys, source_key=self.label_key, margin=margin, allow_smaller=True)

    def __call__(self, data):
        return self.crop(data) if bool((torch.as_tensor(data[self.label_key]) > 0).any()) else dict(data)


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


class _OverStudies(Metric):
    """An ignite metric summed over the validation studies (and over ranks), from one-hot predictions and labels:
    `count` gives each study's (numerator, denominator), or SIZE numbers summed alike."""

    SIZE = 2

    def __init__(self) -> None:
        super().__init__(output_transform=from_engine(["pred", "label"]))

    @reinit__is_reduced
    def reset(self) -> None:
        self._sums = torch.zeros(self.SIZE, dtype=torch.float64)

    @reinit__is_reduced
    def update(self, output) -> None:
        for pred, label in zip(*output):
            self._sums += torch.tensor(self.count(_classes(pred), _classes(label)), dtype=torch.float64)

    @sync_all_reduce("_sums")
    def compute(self) -> Any:
        return _ratio(*self._sums.tolist())

    @abstractmethod
    def count(self, pred: np.ndarray, label: np.ndarray) -> tuple[float, ...]:
        """The numbers one study adds."""


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("nan")


def _classes(one_hot: torch.Tensor) -> np.ndarray:
    return np.asarray(torch.as_tensor(one_hot).argmax(0).cpu(), dtype=np.uint8)


class GlobalTumourDice(_OverStudies):
    """Tumour Dice over all validation voxels together (LiTS' global Dice)."""

    def count(self, pred, label):
        a, b = pred == 2, label == 2
        return 2.0 * float((a & b).sum()), float(a.sum() + b.sum())


class LesionCounts(_OverStudies):
    """Lesion detection (lib.metrics.lesions) summed over the validation studies: true lesions of 10 mm or more
    found (a predicted tumour overlaps them), matched (the predicted components touching them reach an IoU of 0.5: a
    tumour label spread over the liver finds every lesion in it and matches none) and in all, false-positive lesions,
    studies. Counted on the label /infer would return (lib.transforms.postprocess.clean_label: tumour near the liver,
    no specks), so the false positives are those an annotator would see; the Dice metrics stay on the raw
    prediction. lesion_metrics reads the three validation numbers from one of these, so that each study is cleaned
    and its lesions counted once, not once a number (the clean-up is most of a validation's time on a GPU)."""

    SIZE = 5

    def __init__(self, spacing: tuple[float, ...], rules: CleanUp) -> None:
        super().__init__()
        self.spacing, self.rules = tuple(spacing), rules
        self.affine = np.diag([*spacing, 1.0])

    def count(self, pred, label):
        detection = lesion_detection(self.rules(pred, self.spacing), label, self.affine)
        bands = [v for k, v in detection["found_by_size"].items() if not k.startswith("under")]
        return (float(sum(b["found"] for b in bands)), float(sum(b["matched"] for b in bands)),
                float(sum(b["of"] for b in bands)), float(detection["false_positives"]), 1.0)

    @sync_all_reduce("_sums")
    def compute(self) -> list[float]:
        return self._sums.tolist()


def lesion_metrics(spacing: tuple[float, ...], rules: CleanUp) -> dict[str, Metric]:
    """val_lesion_sensitivity (found of the lesions of 10 mm or more), val_lesions_matched (matched of them) and
    val_false_positive_lesions (a study), all read from one LesionCounts (ignite attaches it once)."""
    counts = LesionCounts(spacing, rules)
    return {"val_lesion_sensitivity": MetricsLambda(lambda s: _ratio(s[0], s[2]), counts),
            "val_lesions_matched": MetricsLambda(lambda s: _ratio(s[1], s[2]), counts),
            "val_false_positive_lesions": MetricsLambda(lambda s: _ratio(s[3], s[4]), counts)}
