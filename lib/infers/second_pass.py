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
import torch.nn.functional as F
from monai.inferers import Inferer

from ..metrics.lesions import LIVER, TUMOUR
from ..transforms.postprocess import channel_argmax
from ..transforms.preprocess import WINDOW_SPAN_HU, window_to_hu


class IntensityShiftInferer(Inferer):
    """Runs `inner` on the input; where the liver it finds (label 1 by argmax) has a median of `liver_hu` or more,
    also on the input shifted by `shift_hu` (clipped to the window again), and returns the mean of the two, but the
    first's logits where it called tumour. `report` hears what was decided: whether the second pass ran, the first
    pass's liver median (HU, None without a liver), the shift. scale above 1: the second pass runs on the shifted
    input averaged down by `scale` on every axis, through `coarse` (an inferer fitted to that grid), and its logits
    come back to the first's grid by trilinear interpolation."""

    def __init__(self, inner: Inferer, shift_hu: float, liver_hu: float,
                 report: Callable[[dict[str, Any]], None] | None = None, scale: int = 1,
                 coarse: Inferer | None = None) -> None:
        super().__init__()
        self.inner, self.liver_hu, self.shift_hu, self.report = inner, liver_hu, shift_hu, report
        self.scale, self.coarse = scale, coarse or inner

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
        if self.scale == 1:
            second = self.inner(shifted, network, *args, **kwargs)
        else:
            second = self._coarse_pass(shifted, network, *args, **kwargs).to(first.dtype)
        mean = second.add_(first).mul_(0.5)  # in place: 3 x the region
        return torch.where(label == TUMOUR, first, mean, out=mean)

    def _coarse_pass(self, x: torch.Tensor, network: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        """The network's logits for `x` from `x` averaged down by `scale`: padded (edge values) to a multiple of it
        first, so that the way back is an exact factor and the grids' centres line up."""
        s, shape = self.scale, x.shape[2:]
        pad = [p for n in reversed(shape) for p in (0, -n % s)]
        small = F.avg_pool3d(F.pad(x, pad, mode="replicate"), s)
        logits = self.coarse(small, network, *args, **kwargs)
        up = F.interpolate(logits, scale_factor=s, mode="trilinear", align_corners=False)
        return up[:, :, :shape[0], :shape[1], :shape[2]]
