"""A second pass of the network on the study shifted in CT number, where the first pass's liver lies at an edge of
what the network learnt: darker for an enhanced liver brighter than the phantoms', brighter for a dark one it lost.

Every network trained here learnt a ceiling on the liver's CT number (the phantoms' portal-venous livers, 98 to 125
HU): a brighter real liver is missed in its brighter part (docs/model-log.md). A pass 20 HU darker sees that part
within the ceiling; on a dark liver it would push the liver under the network's floor. At the floor (a fatty liver
without contrast, first-pass median 14 to 34 HU) the network may miss the liver whole, and a pass 20 HU brighter
finds it; run where the first pass had found the liver, that pass added other organs to it, so it runs only where the
organ the first pass keeps is small. Which pass runs is decided by the first pass's liver (`ShiftRule`); the two
passes' logits are averaged, and the second cannot take a tumour the first found (averaged, it lost a held-out
phantom's bright, hypervascular, lesions). MONAI's test-time augmentation (monai.data.TestTimeAugmentation) inverts
random transforms and votes on labels; this is one fixed shift with nothing to invert, decided by the first pass, so
it wraps the inferer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from monai.inferers import Inferer

from ..metrics.lesions import LIVER, TUMOUR
from ..transforms.postprocess import channel_argmax, organ
from ..transforms.preprocess import WINDOW_SPAN_HU, window_to_hu


@dataclass(frozen=True)
class ShiftRule:
    """The shift (HU) of the second pass for the first pass's liver, from its median (HU) and, asked only where it
    matters, its organ's volume (mL): `bright_shift_hu` from `bright_from_hu` up, `dark_shift_hu` under
    `dark_below_hu` (and, with `dark_max_ml`, under that volume: a dark liver the first pass mostly lost), else (or
    without a liver) 0, no second pass. A shift of 0 turns its end off."""

    bright_shift_hu: float = 0.0
    bright_from_hu: float = 90.0
    dark_shift_hu: float = 0.0
    dark_below_hu: float = 35.0
    dark_max_ml: float = 0.0  # 0: whatever the volume

    def __call__(self, median_hu: float | None, organ_ml: Callable[[], float] = lambda: 0.0) -> float:
        if median_hu is None:
            return 0.0
        if self.bright_shift_hu and median_hu >= self.bright_from_hu:
            return self.bright_shift_hu
        if self.dark_shift_hu and median_hu < self.dark_below_hu and (not self.dark_max_ml
                                                                       or organ_ml() < self.dark_max_ml):
            return self.dark_shift_hu
        return 0.0

    def __bool__(self) -> bool:
        return bool(self.bright_shift_hu or self.dark_shift_hu)


class IntensityShiftInferer(Inferer):
    """Runs `inner` on the input; where `rule` gives the median of the liver it finds (label 1 by argmax) a shift,
    also on the input shifted by it (clipped to the window again), and returns the mean of the two, but the first's
    logits where it called tumour. `spacing`: the input's voxel spacing (mm), for the volume of the organ the
    clean-up would keep of the first pass, where the rule asks. `report` hears what was decided: whether the second
    pass ran, the first pass's liver median (HU, None without a liver) and, where it was asked, its organ's volume
    (mL), the shift (0 where none ran)."""

    def __init__(self, inner: Inferer, rule: ShiftRule, spacing: tuple[float, float, float],
                 report: Callable[[dict[str, Any]], None] | None = None) -> None:
        super().__init__()
        self.inner, self.rule, self.spacing, self.report = inner, rule, spacing, report

    def __call__(self, inputs: torch.Tensor, network: Any, *args: Any, **kwargs: Any):
        first = self.inner(inputs, network, *args, **kwargs)
        label = channel_argmax(first[0])[None]  # one study: torch.argmax over channels is 5 times slower here
        liver = (label == LIVER).to(inputs.device)
        median = float(window_to_hu(inputs[liver].float().median())) if bool(liver.any()) else None
        asked: dict[str, float] = {}

        def organ_ml() -> float:
            voxels = int(organ(label[0, 0].to(torch.uint8).cpu().numpy(), self.spacing).sum())
            asked["organ_ml"] = round(voxels * float(np.prod(self.spacing)) / 1000.0, 1)
            return asked["organ_ml"]

        shift_hu = self.rule(median, organ_ml)
        if self.report is not None:
            self.report({"ran": bool(shift_hu), "liver_median_hu": None if median is None else round(median, 1),
                         **asked, "shift_hu": shift_hu})
        if not shift_hu:
            return first
        shifted = (inputs + shift_hu / WINDOW_SPAN_HU).clamp_(0.0, 1.0)
        mean = self.inner(shifted, network, *args, **kwargs).add_(first).mul_(0.5)  # in place: 3 x the region
        return torch.where(label == TUMOUR, first, mean, out=mean)
