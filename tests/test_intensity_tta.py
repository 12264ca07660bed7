"""The second pass on the study shifted in CT number (intensity_tta_hu for a bright liver, dark_liver_tta_hu for a
dark one): its arithmetic, which pass the first pass's liver decides, the tumours it leaves alone, and that an /infer
request's options reach the label the task returns."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.inferers import SimpleInferer

from lib.data.phantoms import generate_study
from lib.errors import InvalidInput
from lib.infers.liver_tumor import LiverTumorInfer
from lib.infers.second_pass import IntensityShiftInferer, ShiftRule
from lib.settings import HU_WINDOW, Settings

ONE_MM = (1.0, 1.0, 1.0)  # the inferer's voxel spacing, for a volume no rule here asks


class LiverInABand(torch.nn.Module):
    """Liver where the windowed CT is between 0.4 and 0.6 (63 to 105 HU), background elsewhere; tumour never."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        liver = torch.minimum(x - 0.4, 0.6 - x) * 40.0
        return torch.cat([torch.zeros_like(x), liver, torch.full_like(x, -10.0)], dim=1)


class BothPasses(torch.nn.Module):
    """What the options should compute, written out: the band network's logits averaged over x and x shifted by
    `shift_hu` (it calls no tumour, which the second pass would leave alone)."""

    def __init__(self, shift_hu: float) -> None:
        super().__init__()
        self.net, self.step = LiverInABand(), shift_hu / 210.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.net(x) + self.net((x + self.step).clamp(0.0, 1.0))) / 2


def test_the_rule_picks_the_bright_pass_the_dark_pass_or_none():
    rule = ShiftRule(bright_shift_hu=-20, bright_from_hu=90, dark_shift_hu=20, dark_below_hu=35)
    assert [rule(m) for m in (None, 10.0, 34.9, 35.0, 89.9, 90.0, 130.0)] == [0, 20, 20, 0, 0, -20, -20]
    assert ShiftRule(dark_shift_hu=20)(120.0) == 0 and ShiftRule(bright_shift_hu=-20)(10.0) == 0
    assert not ShiftRule() and ShiftRule(dark_shift_hu=20) and ShiftRule(bright_shift_hu=-20)
    # with a volume limit, a dark liver gets its pass only where the first pass found little of it
    lost = ShiftRule(dark_shift_hu=20, dark_below_hu=35, dark_max_ml=800)
    assert [lost(20.0, lambda: ml) for ml in (221.0, 799.9, 800.0, 1900.0)] == [20, 20, 0, 0]
    asked = []
    assert lost(60.0, lambda: asked.append(1) or 100.0) == 0 and not asked  # the volume only where it decides


@torch.no_grad()  # as MONAI Label runs the inferer
def test_the_two_passes_are_averaged_and_the_shifted_one_stays_in_the_window():
    x = torch.tensor([0.0, 0.05, 0.5, 0.8, 1.0]).reshape(1, 1, 5, 1, 1)
    liver_everywhere = torch.nn.Conv3d(1, 2, 1)  # channel 1 (liver) always wins; the logits follow x
    liver_everywhere.weight.copy_(torch.tensor([0.0, 1.0]).reshape(2, 1, 1, 1, 1))
    liver_everywhere.bias.copy_(torch.tensor([0.0, 1.0]))
    shift = -21.0  # a tenth of the window
    step = shift / (HU_WINDOW[1] - HU_WINDOW[0])
    first = liver_everywhere(x)
    second = liver_everywhere((x + step).clamp(0, 1))
    # the liver (everything) has a median of 0.5 of the window, 84 HU: a gate under it lets the second pass run
    out = IntensityShiftInferer(SimpleInferer(), ShiftRule(shift, 83.5), ONE_MM)(x, liver_everywhere)
    assert torch.allclose(out, (first + second) / 2)
    assert float(out[0, 1].flatten()[1]) == pytest.approx(1.025)  # 1 + (0.05 + 0.0) / 2: the shifted 0.05 clipped
    # a gate above the liver's median: the first pass alone
    above = IntensityShiftInferer(SimpleInferer(), ShiftRule(shift, 84.5), ONE_MM)
    assert torch.equal(above(x, liver_everywhere), first)


@torch.no_grad()
def test_where_the_first_pass_calls_tumour_the_darker_pass_cannot_take_it():
    # tumour where the windowed CT is above 0.5 (84 HU), liver under: averaged with the pass 0.1 of the window
    # darker, the voxels from 0.5 to 0.55 would be liver
    class TumourAboveHalf(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([torch.full_like(x, -10.0), torch.zeros_like(x), (x - 0.5) * 10.0], dim=1)

    x = torch.tensor([0.3, 0.4, 0.52, 0.54, 0.7]).reshape(1, 1, 5, 1, 1)
    net = TumourAboveHalf()
    first, second = net(x), net((x - 0.1).clamp(0, 1))
    out = IntensityShiftInferer(SimpleInferer(), ShiftRule(-21.0, -1000.0), ONE_MM)(x, net)
    assert ((first + second) / 2).argmax(1).flatten().tolist() == [1, 1, 1, 1, 2]
    assert out.argmax(1).flatten().tolist() == [1, 1, 2, 2, 2] == first.argmax(1).flatten().tolist()
    tumour = (first.argmax(1, keepdim=True) == 2).expand_as(first)
    assert torch.equal(out[tumour], first[tumour]) and torch.equal(out[~tumour], ((first + second) / 2)[~tumour])


def test_a_request_with_the_option_returns_the_two_passes_label(tmp_path):
    path = tmp_path / "study.nii.gz"
    study = generate_study(6, 2, "small", phase="portal_venous")
    nib.save(study.image, path)

    def task(module: torch.nn.Module) -> LiverTumorInfer:
        net = tmp_path / f"{type(module).__name__}.ts"
        torch.jit.script(module).save(str(net))
        # the dark pass (on by default) off, and without its volume limit: each request turns on what it measures
        settings = Settings.from_conf({"pretrained_path": str(net), "spacing": "3", "roi_size": "64",
                                       "locator_path": "none", "denoise_above_hu": "0", "cpu_bf16": "false",
                                       "dark_liver_tta_hu": "0", "dark_liver_max_ml": "0"})
        return LiverTumorInfer([str(net)], settings, "test")

    reports = []

    def label(t: LiverTumorInfer, **options) -> np.ndarray:
        label_file, result = t({"image": str(path), "device": "cpu", **options})
        reports.append(result.get("second_pass"))
        out = np.asanyarray(nib.load(label_file).dataobj)
        Path(label_file).unlink()
        assert out.shape == study.image.shape
        return out

    band = task(LiverInABand())
    plain, shifted = label(band), label(band, intensity_tta_hu=-20, intensity_tta_liver_hu=60)
    assert (plain == 1).sum() > 1000 and (shifted != plain).sum() > 1000  # the option changes the label ...
    assert np.array_equal(shifted, label(task(BothPasses(-20.0))))  # ... to the two passes' mean
    # ... where the first pass's liver (63 to 105 HU here) reaches the gate, and not where it does not
    assert np.array_equal(label(band, intensity_tta_hu=-20, intensity_tta_liver_hu=110), plain)
    # and the result says so: nothing with the option off, then whether it ran, on a liver of 63 to 105 HU
    assert reports[0] is None and reports[2] is None
    assert reports[1]["ran"] and not reports[3]["ran"] and reports[1]["shift_hu"] == -20.0
    assert 63 < reports[1]["liver_median_hu"] == reports[3]["liver_median_hu"] < 105
    # the dark end: a liver of 63 to 105 HU is dark under a gate of 110, and the pass is 20 HU brighter
    brighter = label(band, dark_liver_tta_hu=20, dark_liver_hu=110)
    assert (brighter != plain).sum() > 1000 and np.array_equal(brighter, label(task(BothPasses(20.0))))
    assert np.array_equal(label(band, dark_liver_tta_hu=20, dark_liver_hu=60), plain)
    assert reports[4] == {**reports[1], "shift_hu": 20.0} and "organ_ml" not in reports[4]
    assert reports[6]["ran"] is False and reports[6]["shift_hu"] == 0
    # ... and under a volume limit, only where the organ the clean-up would keep of the first pass is smaller
    limited = label(band, dark_liver_tta_hu=20, dark_liver_hu=110, dark_liver_max_ml=100_000)
    organ_ml = reports[-1]["organ_ml"]
    plain_liver_ml = float((plain > 0).sum()) * float(np.prod(study.image.header.get_zooms())) / 1000.0
    assert np.array_equal(limited, brighter) and 0.5 * plain_liver_ml < organ_ml < 1.5 * plain_liver_ml
    assert np.array_equal(label(band, dark_liver_tta_hu=20, dark_liver_hu=110, dark_liver_max_ml=organ_ml - 1), plain)
    assert reports[-1]["ran"] is False and reports[-1]["organ_ml"] == organ_ml
    assert Settings().dark_liver_tta_hu == 20 and Settings().dark_liver_max_ml == 800  # the shipped defaults
    for option in ("intensity_tta_hu", "dark_liver_tta_hu"):
        with pytest.raises(InvalidInput, match=option):
            band({"image": str(path), "device": "cpu", option: 500})
