"""The liver gate: labelled voxels far from the locator's liver are dropped, measured across two grids of different
spacing and orientation; nothing is dropped where the locator found no liver."""

from __future__ import annotations

import numpy as np
import torch
from monai.data import MetaTensor

from lib.cascade.crop import CASCADE
from lib.cascade.gate import NearCoarseLiverd, near_coarse_liver
from lib.cascade.locate import CoarseLiver, whole

# the locator's grid: 4 mm, RAS, its liver a cube of voxels 5..9 (centres at 20..36 mm on every axis)
MASK = np.zeros((20, 20, 20), bool)
MASK[5:10, 5:10, 5:10] = True
COARSE = CoarseLiver(MASK, np.diag([4.0, 4.0, 4.0, 1.0]))
# the label's grid: 1 mm, the first two axes flipped (x = 79 - i, y = 79 - j, z = k)
AFFINE = np.array([[-1.0, 0, 0, 79], [0, -1.0, 0, 79], [0, 0, 1.0, 0], [0, 0, 0, 1]])


def voxel(x: float, y: float, z: float) -> tuple[int, int, int]:
    """The label's voxel at world (x, y, z) mm."""
    return int(79 - x), int(79 - y), int(z)


def label_with_a_spill() -> np.ndarray:
    label = np.zeros((80, 80, 80), np.uint8)
    label[voxel(38, 38, 18)[0]:voxel(18, 18, 18)[0] + 1, voxel(38, 38, 18)[1]:voxel(18, 18, 18)[1] + 1, 18:39] = 1
    label[voxel(28, 28, 28)] = 2
    label[voxel(70, 38, 18)[0]:voxel(60, 38, 18)[0] + 1, voxel(38, 38, 18)[1]:voxel(18, 18, 18)[1] + 1, 18:39] = 1
    label[voxel(48, 28, 28)] = 1  # 12 mm beyond the coarse liver's last voxel centre (36 mm)
    return label


def test_voxels_far_from_the_locators_liver_are_dropped_and_near_ones_kept():
    label = label_with_a_spill()
    gated = near_coarse_liver(label, AFFINE, COARSE, 16.0)
    assert (gated[voxel(38, 38, 18)[0]:voxel(18, 18, 18)[0] + 1] == label[voxel(38, 38, 18)[0]:voxel(18, 18, 18)[0]
            + 1]).all()  # the liver and its tumour, untouched
    assert gated[voxel(28, 28, 28)] == 2 and gated[voxel(48, 28, 28)] == 1
    assert not gated[voxel(70, 38, 18)[0]:voxel(60, 38, 18)[0] + 1].any()  # the spill, 24 mm and more away
    assert near_coarse_liver(label, AFFINE, COARSE, 8.0)[voxel(48, 28, 28)] == 0
    assert (label == label_with_a_spill()).all()  # the input is not changed


def test_the_transform_reports_what_it_removed_and_leaves_a_study_without_a_coarse_liver_alone():
    label = label_with_a_spill()
    pred = MetaTensor(torch.as_tensor(label[None]).float(), affine=torch.as_tensor(AFFINE))
    region = whole(label.shape, "the liver touches the border of the scan", liver=COARSE)
    out = NearCoarseLiverd("pred", "result", 16.0)({"pred": pred, CASCADE: {"region": region}, "result": {}})
    spill_ml = 11 * 21 * 21 / 1000.0
    assert out["result"]["liver_gate"] == {"distance_mm": 16.0, "removed_ml": round(spill_ml, 2)}
    assert np.allclose(np.asarray(out["pred"].affine), AFFINE) and out["pred"].shape == (1, 80, 80, 80)
    assert int((out["pred"] > 0).sum()) == int((label > 0).sum()) - 11 * 21 * 21
    for region, distance in ((whole(label.shape, "no liver found at low resolution"), 16.0), (region, 0.0)):
        out = NearCoarseLiverd("pred", "result", distance)({"pred": pred, CASCADE: {"region": region}, "result": {}})
        assert out["pred"] is pred and "liver_gate" not in out["result"]
