"""A second pass of the network on the study made darker, for an enhanced liver brighter than the phantoms'.

Every network trained here learnt a ceiling on the liver's CT number (the phantoms' portal-venous livers, 98 to 125
HU): a brighter real liver is missed in its brighter part (docs/model-log.md). The second pass sees that part within
the ceiling. It runs only where the first pass's liver is enhanced (on a dark, fatty or non-contrast, liver it
pushes the liver under the network's floor), its logits are averaged with the first's, and it cannot take a tumour
the first pass found (averaged, it lost a held-out phantom's bright, hypervascular, lesions). MONAI's test-time
augmentation (monai.data.TestTimeAugmentation) inverts random transforms and votes on labels; this is one fixed
shift with nothing to invert, decided by the first pass, so it wraps the inferer."""

from __future__ import annotations

from typing import Any, Callable

import torch
from monai.inferers import Inferer

from ..metrics.lesions import LIVER, TUMOUR
from ..transforms.postprocess import channel_argmax
from ..transforms.preprocess import WINDOW_SPAN_HU, window_to_hu


class IntensityShiftInferer(Inferer):
    """Runs `inner` on the input; where the liver it finds (label 1 by argmax) has a median of `liver_hu` or more,
    also on the input shifted by `shift_hu` (clipped to the window again), and returns the mean of the two, but the
    first's logits where it called tumour. `report` hears what was decided: whether the second pass ran, the first
    pass's liver median (HU, None without a liver), the shift."""

    def __init__(self, inner: Inferer, shift_hu: float, liver_hu: float,
                 report: Callable[[dict[str, Any]], None] | None = None) -> None:
        super().__init__()
        self.inner, self.liver_hu, self.shift_hu, self.report = inner, liver_hu, shift_hu, report

    def __call__(self, inputs: torch.Tensor, network: Any, *args: Any, **kwargs: Any):
        first = self.inner(inputs, network, *args, **kwargs)
        label = channel_argmax(first[0])[None]  # one study: torch.argmax over channels is 5 times slower here
        liver = (label == LIVER).to(inputs.device)
        median = float(window_to_hu(inputs[liver].float().median())) if bool(liver.any()) else None
        ran = median is not None and median >= self.liver_hu
        if self.report is not None:
            self.report({"ran": ran, "liver_median_hu": None if median is None else round(median, 1),
                         "shift_hu": self.shift_hu})
        if not ran:
            return first
        shifted = (inputs + self.shift_hu / WINDOW_SPAN_HU).clamp_(0.0, 1.0)
        mean = self.inner(shifted, network, *args, **kwargs).add_(first).mul_(0.5)  # in place: 3 x the region
        return torch.where(label == TUMOUR, first, mean, out=mean)
