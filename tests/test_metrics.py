"""Dice and lesion detection on hand-made volumes whose answers are known."""

from __future__ import annotations

import numpy as np
import torch

from lib.metrics.dice import dice, whole_liver_dice
from lib.metrics.evaluate import summarise
from lib.metrics.lesions import equivalent_diameter_mm, lesion_detection
from lib.metrics.liver_volume import liver_volume_errors

AFFINE = np.diag([1.0, 1.0, 1.0, 1.0])


def ball(shape, centre, radius) -> np.ndarray:
    grid = np.indices(shape)
    return sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius**2


def test_two_lesions_one_found_one_false_positive():
    truth = np.ones((60, 60, 60), np.uint8)
    truth[ball(truth.shape, (15, 15, 15), 7)] = 2  # 1.4 mL, 14 mm across
    truth[ball(truth.shape, (45, 45, 45), 3)] = 2  # 0.1 mL: under 10 mm
    pred = np.ones_like(truth)
    pred[ball(truth.shape, (17, 15, 15), 6)] = 2  # overlaps the first
    pred[ball(truth.shape, (45, 15, 45), 3)] = 2  # overlaps nothing
    found = lesion_detection(pred, truth, AFFINE)
    assert found["true_lesions"] == 2 and found["found"] == 1 and found["predicted_lesions"] == 2
    assert found["found_by_size"]["10 to 20 mm"] == {"found": 1, "of": 1, "matched": 1}
    assert found["found_by_size"]["under 10 mm"] == {"found": 0, "of": 1, "matched": 0}
    first = found["true_lesion_list"][0]
    inter = int((ball(truth.shape, (17, 15, 15), 6) & ball(truth.shape, (15, 15, 15), 7)).sum())
    union = int((ball(truth.shape, (17, 15, 15), 6) | ball(truth.shape, (15, 15, 15), 7)).sum())
    assert abs(first["iou"] - inter / union) < 1e-3 and first["iou"] > 0.5
    assert found["false_positives"] == 1 and abs(found["false_positive_ml"][0] - 0.123) < 0.01
    assert found["tumour_overlap_voxels"] == int(((pred == 2) & (truth == 2)).sum())


def test_touching_lesions_are_one_and_one_prediction_finds_both():
    truth = np.ones((50, 50, 50), np.uint8)
    truth[ball(truth.shape, (20, 25, 25), 6)] = 2
    truth[ball(truth.shape, (31, 25, 25), 5)] = 2  # touches the first: one 26-connected lesion
    pred = np.ones_like(truth)
    pred[ball(truth.shape, (20, 25, 25), 3)] = 2
    found = lesion_detection(pred, truth, AFFINE)
    assert found["true_lesions"] == 1 and found["found"] == 1 and found["false_positives"] == 0
    apart = np.ones_like(truth)
    apart[ball(truth.shape, (12, 25, 25), 4)] = 2
    apart[ball(truth.shape, (38, 25, 25), 4)] = 2
    both = np.ones_like(truth)
    both[8:43, 22:29, 22:29] = 2  # one prediction across both
    found = lesion_detection(both, apart, AFFINE)
    assert found["true_lesions"] == 2 and found["found"] == 2 and found["predicted_lesions"] == 1


def test_one_prediction_over_several_lesions_finds_them_but_matches_none():
    """Found means overlapped; matched asks the IoU of a lesion with the components touching it to reach 0.5, so
    a tumour label spread over the liver and its lesions finds them all and matches none."""
    truth = np.ones((60, 60, 60), np.uint8)
    centres = [(15, 15, 15), (45, 15, 15), (15, 45, 45)]
    for c in centres:
        truth[ball(truth.shape, c, 5)] = 2
    spread = np.full_like(truth, 2)  # the whole volume called tumour
    found = lesion_detection(spread, truth, AFFINE)
    assert found["found"] == 3 and found["false_positives"] == 0
    assert sum(v["matched"] for v in found["found_by_size"].values()) == 0
    assert max(d["iou"] for d in found["true_lesion_list"]) < 0.01
    exact = lesion_detection(truth.copy(), truth, AFFINE)
    assert sum(v["matched"] for v in exact["found_by_size"].values()) == 3
    assert all(d["iou"] == 1.0 for d in exact["true_lesion_list"])
    halo = truth.copy()
    halo[ball(truth.shape, centres[0], 7)] = 2  # one grown to 14 mm from 10: IoU about 0.36, found, not matched
    grown = lesion_detection(halo, truth, AFFINE)
    assert grown["found"] == 3 and sum(v["matched"] for v in grown["found_by_size"].values()) == 2


def test_visible_lesions_are_measured_in_the_image_against_the_liver_around_them():
    """Visible: 10 mm or more, mean differing from the liver 1-5 mm around it by 10 HU or more, measured in the image.
    A dark core in a bright rim whose mean is the liver's is not visible by that measure; a small one is not
    counted; neither is one with no liver around it."""
    truth = np.zeros((80, 80, 40), np.uint8)
    truth[5:75, 5:75, 5:35] = 1
    image = np.full(truth.shape, 100.0, np.float32)
    image[truth == 0] = -100.0  # fat around the liver: must not count as "the liver around"
    dark = ball(truth.shape, (20, 20, 20), 7)  # 14 mm at 60 HU: visible
    ringed = ball(truth.shape, (55, 20, 20), 8)  # 16 mm: a 40 HU core in a 120 HU rim, mean about 100
    core = ball(truth.shape, (55, 20, 20), 5.5)
    faint = ball(truth.shape, (20, 55, 20), 7)  # 14 mm at 95 HU
    small = ball(truth.shape, (55, 55, 20), 3)  # 6 mm at 40 HU: under 10 mm
    for mask in (dark, ringed, faint, small):
        truth[mask] = 2
    image[dark], image[ringed], image[faint], image[small] = 60.0, 120.0, 95.0, 40.0
    image[core] = 40.0
    assert abs(image[ringed].mean() - 100.0) < 10
    pred = np.where(truth > 0, 1, 0).astype(np.uint8)
    pred[ball(truth.shape, (20, 20, 20), 4)] = 2  # finds the dark one
    pred[ball(truth.shape, (55, 20, 20), 4)] = 2  # and the ringed one
    found = lesion_detection(pred, truth, AFFINE, image=image)
    assert found["found"] == 2 and found["true_lesions"] == 4
    assert found["found_visible_10mm"] == {"found": 1, "of": 1, "matched": 0}  # 8 mm called in a 14 mm lesion
    contrasts = sorted(d["contrast_hu"] for d in found["true_lesion_list"] if "contrast_hu" in d)
    assert len(contrasts) == 4 and abs(contrasts[1] + 40) < 1 and abs(contrasts[3] + 5) < 1  # the dark, the faint
    pred[ball(truth.shape, (20, 20, 20), 4)] = 1  # the dark one missed
    assert lesion_detection(pred, truth, AFFINE, image=image)["found_visible_10mm"] == {"found": 0, "of": 1,
                                                                                        "matched": 0}
    assert "found_visible_10mm" not in lesion_detection(pred, truth, AFFINE)  # no image, not measured
    alone = np.zeros_like(truth)
    alone[ball(truth.shape, (20, 20, 20), 7)] = 2  # a lesion with no liver labelled around it
    assert lesion_detection(alone, alone, AFFINE, image=image)["found_visible_10mm"] == {"found": 0, "of": 0,
                                                                                          "matched": 0}


def test_sizes_dice_and_their_summary():
    assert abs(equivalent_diameter_mm(4 / 3 * np.pi * 5**3 / 1000) - 10.0) < 1e-9
    truth = np.zeros((20, 20, 20), np.uint8)
    truth[5:15, 5:15, 5:15] = 1
    truth[8:12, 8:12, 8:12] = 2
    pred = truth.copy()
    pred[5:7] = 0
    assert dice(pred, truth, 2) == 1.0 and abs(dice(pred, truth, 1) - 2 * 736 / (736 + 936)) < 1e-9
    assert whole_liver_dice(pred, truth) == 2 * 800 / 1800 and dice(pred, truth * 0, 2) == 0.0
    rows = [{"liver_dice": 0.9, "tumour_dice": 0.5, "whole_liver_dice": 0.95, "seconds": 1.0,
             "lesions": lesion_detection(pred, truth, AFFINE)},
            {"liver_dice": 0.7, "tumour_dice": None, "whole_liver_dice": 0.85, "seconds": 3.0,
             "lesions": lesion_detection(np.zeros_like(truth), np.zeros_like(truth), AFFINE)}]
    summary = summarise(rows)
    assert summary["liver_dice"] == 0.8 and summary["tumour_dice"] == 0.5 and summary["tumour_cases"] == 1
    assert summary["tumour_global_dice"] == 1.0 and summary["mean_seconds"] == 2.0
    assert summary["false_positives_per_study"] == 0.0


def test_liver_added_far_and_below_and_missed_in_millilitres():
    """A block of liver on a grid stored S-first running down (2.5 mm), then R to L (1 mm), then A to P (2 mm):
    a slab missed, liver added at its edge, 5 to 7.5 mm under it, beside it level with its lowest slice, beside it
    10 mm lower and 27.5 mm under it; each volume is known (a voxel is 5 uL)."""
    affine = np.array([[0, 1.0, 0, 0], [0, 0, -2.0, 0], [-2.5, 0, 0, 50.0], [0, 0, 0, 1]])
    truth = np.zeros((40, 100, 40), np.uint8)
    truth[10:20, 20:60, 10:30] = 1
    truth[12:15, 25:30, 15:20] = 2  # a tumour is liver too
    pred = truth.copy()
    pred[10:20, 20:22, 10:30] = 0  # missed: 400 voxels, 2 mL
    pred[10:20, 60:62, 10:30] = 1  # at its edge, 2 mL
    pred[20:22, 30:40, 10:20] = 1  # just under its lowest slice (5 to 7.5 mm): near, 1 mL
    pred[16:20, 85:90, 10:20] = 1  # 26 mm to its side, level with its lowest slice: far, 1 mL
    pred[22:24, 85:90, 10:20] = 2  # 26 mm to its side and 7.5 to 10 mm lower: far, not below; tumour counts, 0.5 mL
    pred[30:32, 30:40, 10:15] = 1  # 27.5 to 30 mm under it: far and below, 0.5 mL
    assert liver_volume_errors(pred, truth, affine) == {
        "liver_added_ml": 5.0, "liver_added_far_ml": 2.0, "liver_added_below_ml": 0.5, "liver_missed_ml": 2.0}
    assert liver_volume_errors(pred, np.zeros_like(truth), affine)["liver_added_far_ml"] == round(
        (pred > 0).sum() * 0.005, 1)  # no true liver: all of it is far
    rows = [{**liver_volume_errors(p, truth, affine), "liver_dice": 1.0, "tumour_dice": None, "whole_liver_dice": 1.0,
             "seconds": 1.0, "lesions": lesion_detection(truth, truth, AFFINE)} for p in (pred, truth)]
    assert {k: v for k, v in summarise(rows).items() if k.endswith("_ml")} == {
        "liver_added_ml": 2.5, "liver_added_far_ml": 1.0, "liver_added_below_ml": 0.2, "liver_missed_ml": 1.0}


def test_liver_volume_errors_agree_with_distances_measured_in_the_world():
    """Random blobs on an anisotropic grid turned 30 degrees and stored in a permuted order: far and below match
    distances and heights computed point by point in world coordinates."""
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(5)
    turn = np.array([[np.cos(0.5), -np.sin(0.5), 0], [np.sin(0.5), np.cos(0.5), 0], [0, 0, 1.0]])
    axes = turn @ np.eye(3)[:, [2, 0, 1]] * [-1, 1, -1] @ np.diag([2.5, 0.9, 1.6])
    affine = np.eye(4)
    affine[:3, :3], affine[:3, 3] = axes, [10.0, -20.0, 30.0]
    truth = np.zeros((40, 64, 40), np.uint8)
    truth[8:16, 20:44, 12:28] = 1
    pred = truth.copy()
    for _ in range(16):
        c = rng.integers([0, 0, 0], [40, 64, 40])
        pred[tuple(slice(max(0, x - 2), x + 2) for x in c)] = 1
    got = liver_volume_errors(pred, truth, affine)
    world = lambda mask: np.argwhere(mask) @ axes.T + affine[:3, 3]  # noqa: E731
    added = world((pred > 0) & (truth == 0))
    distance = cKDTree(world(truth > 0)).query(added)[0]
    far = distance > 20.0
    below = far & (added[:, 2] < world(truth > 0)[:, 2].min() - 20.0)
    ml = abs(np.linalg.det(axes)) / 1000
    assert far.sum() > 0 and below.sum() > 0 and (far & ~below).sum() > 0
    assert got["liver_added_far_ml"] == round(far.sum() * ml, 1)
    assert got["liver_added_below_ml"] == round(below.sum() * ml, 1)
    assert got["liver_added_ml"] == round(len(added) * ml, 1)


def test_validation_counts_the_lesions_an_annotator_would_see():
    """Training validation counts false positives on the cleaned label /infer returns: specks under min_tumour_ml
    and tumour far from the liver are not lesions anyone sees; a real false positive in the liver is."""
    from lib.trainers.validation import LesionCounts
    from lib.transforms.postprocess import CleanUp

    truth = np.zeros((60, 60, 60), np.uint8)
    truth[10:50, 10:50, 10:50] = 1
    truth[ball(truth.shape, (20, 20, 20), 6)] = 2  # 12 mm across
    pred = truth.copy()
    pred[45, 15, 45] = 2  # a 1 mm^3 speck in the liver: removed (under 0.02 mL)
    pred[55:58, 55:58, 55:58] = 2  # 27 mm^3 far outside the liver: removed (over 5 mm away)
    counts = LesionCounts((1.0,) * 3, CleanUp(margin_mm=5.0, min_tumour_ml=0.02))
    # found, matched, of (lesions of 10 mm or more), false positives, studies
    assert counts.count(pred, truth) == (1.0, 1.0, 1.0, 0.0, 1.0)
    pred[ball(truth.shape, (38, 38, 38), 4)] = 2  # 0.27 mL in the liver, no true lesion there
    assert counts.count(pred, truth) == (1.0, 1.0, 1.0, 1.0, 1.0)
    assert lesion_detection(pred, truth, AFFINE)["false_positives"] == 3  # raw, as before cleaning
    pred[10:35, 10:35, 10:35] = 2  # the liver around the lesion called tumour: the lesion is found, not matched
    assert counts.count(pred, truth) == (1.0, 0.0, 1.0, 1.0, 1.0)


def test_validation_counts_each_study_s_lesions_once_for_its_three_numbers(monkeypatch):
    """Sensitivity, matched share and false positives a study come from one count per study (the clean-up and the
    connected components are most of a validation's time on a GPU), and say what the studies hold."""
    from ignite.engine import Engine

    import lib.trainers.validation as validation

    calls = []
    detect = validation.lesion_detection
    monkeypatch.setattr(validation, "lesion_detection", lambda *a: calls.append(1) or detect(*a))
    truth = np.zeros((40, 40, 40), np.uint8)
    truth[5:35, 5:35, 5:35] = 1
    truth[ball(truth.shape, (15, 15, 15), 6)] = 2
    missed = truth.copy()
    missed[missed == 2] = 1
    missed[ball(truth.shape, (28, 28, 28), 4)] = 2  # and a false positive
    one_hot = lambda a: torch.nn.functional.one_hot(torch.as_tensor(a).long(), 3).permute(3, 0, 1, 2)  # noqa: E731
    studies = [(truth, truth), (missed, truth)]
    engine = Engine(lambda e, i: {"pred": [one_hot(studies[i][0])], "label": [one_hot(studies[i][1])]})
    for name, metric in validation.lesion_metrics((1.0,) * 3, validation.CleanUp(5.0, 0.02)).items():
        metric.attach(engine, name)
    metrics = engine.run([0, 1], max_epochs=1).metrics
    assert len(calls) == 2
    assert metrics["val_lesion_sensitivity"] == 0.5 and metrics["val_lesions_matched"] == 0.5
    assert metrics["val_false_positive_lesions"] == 0.5
