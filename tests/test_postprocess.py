"""Post-processing and reporting of a label, on arrays with known answers."""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from lib.metrics.lesions import max_diameter_mm
from lib.settings import Settings
from lib.transforms.postprocess import (
    CleanUp,
    _clean_box,
    channel_argmax,
    clean_label,
    enclosed,
    liver_around,
    tumour_biased,
    unsure_tumours_dropped,
)
from lib.transforms.report import lesion_report


def test_one_liver_tumour_near_it_no_specks():
    label = np.zeros((60, 60, 40), np.uint8)
    label[10:40, 10:40, 5:30] = 1                 # the liver
    label[20:26, 20:26, 10:16] = 2                # a tumour inside it (216 voxels)
    label[38:44, 15:20, 10:15] = 2                # a tumour bulging out of its surface
    label[50:55, 50:55, 30:35] = 1                # a stray liver blob far away
    label[52:56, 5:9, 5:9] = 2                    # a tumour far from the liver (15 mm at 1 mm voxels)
    label[30, 30, 20] = 2                         # a one-voxel speck inside the liver
    out = clean_label(label, (1.0, 1.0, 1.0), margin_mm=5.0, min_tumour_ml=0.01)
    assert out[50:55, 50:55, 30:35].max() == 0    # not the largest component
    assert (out[20:26, 20:26, 10:16] == 2).all()
    assert (out[38:44, 15:20, 10:15] == 2).all()  # within the margin: kept
    assert out[52:56, 5:9, 5:9].max() == 0        # far from the liver: removed
    assert out[30, 30, 20] == 1                   # a speck inside the liver becomes liver
    assert (out > 0).sum() == (label[:45, :45, :] > 0).sum()  # the liver and its tumours, all kept


def test_enclosed_background_is_what_scipy_fills():
    rng = np.random.default_rng(3)
    for density in (0.5, 0.54, 0.58):  # porous masks (52-92% set): holes, diagonal leaks, open background
        mask = ndimage.uniform_filter(rng.random((30, 26, 18)), 3) < density
        holes = ndimage.binary_fill_holes(mask) & ~mask
        assert holes.any() and (~mask & ~holes).any()
        assert np.array_equal(enclosed(mask), holes)
    shell = np.zeros((9, 9, 9), bool)
    shell[2:7, 2:7, 2:7] = True
    shell[3:6, 3:6, 3:6] = False
    assert enclosed(shell).sum() == 27
    shell[4, 4, 2] = False  # a face opened: the inside joins the outside
    assert not enclosed(shell).any()


def test_margin_and_speck_size_are_in_millimetres():
    label = np.zeros((40, 40, 40), np.uint8)
    label[5:25, 5:25, 5:25] = 1
    label[27:29, 10:12, 10:12] = 2                # a gap of 2 voxels beyond the liver
    coarse = clean_label(label, (3.0, 3.0, 3.0), margin_mm=5.0, min_tumour_ml=0.01)  # 9 mm away: removed
    fine = clean_label(label, (1.0, 1.0, 1.0), margin_mm=5.0, min_tumour_ml=0.001)   # 3 mm away: kept
    assert coarse[27:29, 10:12, 10:12].max() == 0 and (fine[27:29, 10:12, 10:12] == 2).all()
    small = clean_label(label, (1.0, 1.0, 1.0), margin_mm=5.0, min_tumour_ml=0.01)   # 8 voxels = 0.008 mL
    assert small[27:29, 10:12, 10:12].max() == 0



def test_a_tumour_mostly_surrounded_by_other_organs_is_removed_on_request():
    """min_liver_around: a lesion inside the liver is all liver around; a blob lying on the liver's surface (the
    gallbladder called tumour) is mostly background around; a lesion half out of the liver is in between."""
    label = np.zeros((60, 60, 40), np.uint8)
    label[10:40, 10:40, 5:30] = 1
    label[20:26, 20:26, 10:16] = 2                # inside
    label[40:46, 20:26, 10:16] = 2                # on the surface, outside
    label[25:31, 37:43, 20:26] = 2                # half in, half out (y 37-39 in the liver)
    components, n = ndimage.label(label == 2, structure=np.ones((3, 3, 3), bool))
    share = liver_around(components, np.ones(n + 1, bool), label > 0, (2.0, 2.0, 2.0))
    inside, outside, half = (components[23, 23, 13], components[43, 23, 13], components[28, 40, 23])
    assert share[inside] == 1.0
    assert share[outside] < 0.25                  # only the liver face of it: one side of six, partly
    assert 0.3 < share[half] < 0.7
    out = clean_label(label, (2.0, 2.0, 2.0), margin_mm=5.0, min_tumour_ml=0.01, min_liver_around=0.6)
    assert (out[20:26, 20:26, 10:16] == 2).all()
    assert out[40:46, 20:26, 10:16].max() == 0    # removed, and not enclosed by the liver: background
    assert out[25:31, 37:43, 20:26].max() < 2     # the exophytic lesion goes too: the price of the filter
    assert (clean_label(label, (2.0, 2.0, 2.0), 5.0, 0.01) == 2).sum() == (label == 2).sum()  # off: all kept
    # the app's rules, as every place that cleans a label takes them: its settings with a request's change
    rules = CleanUp.of(Settings(min_liver_around_tumour=0.6), min_tumour_ml=0.01)
    assert rules == CleanUp(Settings().tumour_margin_mm, 0.01, 0.6)
    spacing = (2.0, 2.0, 2.0)
    assert np.array_equal(rules(label, spacing), clean_label(label, spacing, rules.margin_mm, 0.01, 0.6))


def test_a_tumour_beside_the_liver_is_measured_when_the_margin_is_under_a_voxel_diagonal():
    """Tumours touching the liver skip the distance transform only where touching means within the margin: at
    1 x 1 x 3 mm a voxel diagonal across slices is 3.3 mm, beyond a 2 mm margin; one voxel over in-plane is 1 mm."""
    label = np.zeros((30, 30, 12), np.uint8)
    label[5:20, 5:20, 2:6] = 1
    label[20, 10, 3] = 2                          # face to face with the liver, 1 mm away
    label[20, 20, 6] = 2                          # diagonal to the liver's corner voxel (19, 19, 5): 3.3 mm
    out = clean_label(label, (1.0, 1.0, 3.0), margin_mm=2.0, min_tumour_ml=0.0)
    assert out[20, 10, 3] == 2 and out[20, 20, 6] == 0
    wide = clean_label(label, (1.0, 1.0, 3.0), margin_mm=5.0, min_tumour_ml=0.0)
    assert wide[20, 10, 3] == 2 and wide[20, 20, 6] == 2

def test_the_clean_up_of_the_labelled_box_is_that_of_the_whole_volume():
    """clean_label works on the box around the labelled voxels (a study segmented whole is mostly far from its
    liver); the strand cut's coarse grid (every 4th voxel in-plane at 0.4 mm) must fall as it falls over the whole
    volume, wherever the box starts, and specks, strands and far tumours go as they go there."""
    rng = np.random.default_rng(3)
    for offset in [(7, 5, 3), (9, 10, 2), (13, 6, 5)]:
        label = np.zeros((90, 80, 40), np.uint8)
        x, y, z = offset
        label[x:x + 30, y:y + 30, z:z + 20] = 1                    # a lobe
        label[x + 36:x + 60, y:y + 30, z:z + 20] = 1               # another, joined by a strand 2 voxels thick
        label[x + 30:x + 36, y + 14:y + 16, z + 9:z + 11] = 1
        label[x + 5:x + 11, y + 5:y + 11, z + 5:z + 9] = 2         # a tumour inside
        label[x + 62:x + 66, y + 10:y + 14, z + 5:z + 8] = 2       # one a little outside
        label[x + 20 + rng.integers(0, 40), y + 40 + rng.integers(0, 20), z + rng.integers(0, 20)] = 2  # specks
        label[x + rng.integers(0, 60), y + 45 + rng.integers(0, 20), z + rng.integers(0, 20)] = 1
        spacing = (0.4, 0.4, 2.5)
        whole = _clean_box(label, spacing, 5.0, 0.01)
        assert np.array_equal(clean_label(label, spacing, 5.0, 0.01), whole)
        assert whole[x + 5:x + 11, y + 5:y + 11, z + 5:z + 9].min() == 2 and whole[x + 40:].max() == 0  # the 2nd lobe


def test_report_measures_the_returned_grid():
    label = np.zeros((30, 30, 20), np.uint8)
    label[5:25, 5:25, 2:18] = 1
    label[8:12, 8:12, 5:9] = 2
    label[15:17, 15:17, 10:12] = 2
    affine = np.diag([0.8, 0.8, 2.5, 1.0])
    r = lesion_report(label, affine)
    voxel = 0.8 * 0.8 * 2.5 / 1000
    assert r["tumour_count"] == 2
    assert r["lesion_volumes_ml"] == [round(64 * voxel, 3), round(8 * voxel, 3)]
    assert r["liver_volume_ml"] == round((20 * 20 * 16 - 72) * voxel, 2)
    # the largest lesion is a 4 x 4 x 4 voxel box: its diameter is the box's diagonal
    assert r["largest_lesion_diameter_mm"] == round(float(np.linalg.norm([3.2, 3.2, 10.0])), 1)


def test_lesion_diameter_follows_the_geometry():
    ball = np.linalg.norm(np.indices((41, 41, 41)) - 20, axis=0) <= 15  # 31 voxels across
    rotation = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    for matrix in (np.eye(3), 2.0 * rotation, np.diag([0.5, 0.5, 3.0])):
        expected = 31 * max(np.linalg.norm(matrix, axis=0))
        assert abs(max_diameter_mm(ball, matrix) - expected) < 0.04 * expected
    line = np.zeros((1, 1, 12), bool)
    line[...] = True
    assert abs(max_diameter_mm(line, np.diag([1.0, 1.0, 2.0])) - float(np.linalg.norm([1, 1, 24]))) < 1e-6


def test_what_hangs_on_the_liver_by_a_thin_strand_is_cut_off_and_the_liver_keeps_its_corners():
    label = np.zeros((80, 40, 40), np.uint8)
    label[5:35, 5:35, 5:35] = 1                   # the liver
    label[35:55, 19:21, 19:21] = 1                # a strand 2 mm thick, 20 mm long
    label[55:75, 10:30, 10:30] = 1                # what the model also called liver at its end (bowel, say)
    label[10:14, 10:14, 10:14] = 2                # a tumour in a corner of the liver
    out = clean_label(label, (1.0, 1.0, 1.0), margin_mm=5.0, min_tumour_ml=0.01)
    assert out[50:].max() == 0  # the blob and the half of the strand nearer to it
    np.testing.assert_array_equal(out[:35], label[:35])  # corners, edges and the tumour as they were
    thick = label.copy()
    thick[35:55, 12:28, 12:28] = 1                # joined by 16 mm of tissue: one organ
    assert (clean_label(thick, (1.0, 1.0, 1.0), margin_mm=5.0, min_tumour_ml=0.01) > 0).sum() == (thick > 0).sum()


def test_a_small_tumour_far_from_the_liver_goes_even_next_to_the_volume_edge():
    label = np.zeros((60, 60, 60), np.uint8)
    label[30:55, 30:55, 30:55] = 1
    label[0:3, 0:3, 0:3] = 2                      # 27 voxels in a corner, 40 mm from the liver
    out = clean_label(label, (1.0, 1.0, 1.0), margin_mm=5.0, min_tumour_ml=0.01)
    assert out[0:3, 0:3, 0:3].max() == 0 and (out == 1).sum() == 25**3


def test_tumours_the_model_is_unsure_of_go_to_the_likelier_other_class():
    logits = torch.zeros(3, 30, 30, 30)
    logits[1, :20] = 1.0                          # liver in the first 20 slices, background after
    logits[2, 2:6, 2:6, 2:6] = 5.0                # a sure tumour in the liver: p = 0.97
    logits[2, 10:14, 10:14, 10:14] = 1.2          # an unsure one in the liver: p = 0.47
    logits[2, 17:23, 2:6, 2:6] = 1.2              # an unsure one across the liver's edge: 0.47 and 0.62
    labels = channel_argmax(logits)
    assert int((labels == 2).sum()) == 64 * 2 + 96
    kept, dropped = unsure_tumours_dropped(logits, labels, 0.6)
    assert [d["voxels"] for d in dropped] == [96, 64]         # what went, largest first
    assert all(d["mean_tumour_probability"] < 0.6 for d in dropped) and dropped[1]["mean_tumour_probability"] == 0.472
    assert (kept[0, 2:6, 2:6, 2:6] == 2).all() and int((kept == 2).sum()) == 64
    assert (kept[0, 10:14, 10:14, 10:14] == 1).all()
    assert (kept[0, 17:20, 2:6, 2:6] == 1).all() and (kept[0, 20:23, 2:6, 2:6] == 0).all()
    assert torch.equal(unsure_tumours_dropped(logits, labels, 0.4)[0], labels)  # all above 0.4: as they were
    assert torch.equal(unsure_tumours_dropped(logits, labels, 0.0)[0], labels)  # 0: off
    assert unsure_tumours_dropped(logits, labels, 0.0)[1] is None               # off: nothing to report


def test_tumours_the_model_places_outside_the_liver_go_by_their_background_share():
    logits = torch.zeros(3, 30, 30, 30)
    logits[1, :20] = 2.0                          # liver in the first 20 slices, background after
    logits[2, 2:6, 2:6, 2:6] = 6.0                # a lesion in the liver: background p = 0.002
    logits[2, 22:26, 2:6, 2:6] = 3.0              # "tumour" beside the liver (a gallbladder): background p = 0.04
    logits[1, 22:26, 2:6, 2:6] = 1.5              # ... liver p 0.2: the better other class there is still liver
    labels = channel_argmax(logits)
    assert int((labels == 2).sum()) == 128
    kept, dropped = unsure_tumours_dropped(logits, labels, 0.0, 0.03)
    assert dropped == [{"voxels": 64, "mean_tumour_probability": 0.786, "mean_background_probability": 0.039}]
    assert (kept[0, 2:6, 2:6, 2:6] == 2).all() and int((kept == 2).sum()) == 64
    assert (kept[0, 22:26, 2:6, 2:6] == 1).all()
    assert torch.equal(unsure_tumours_dropped(logits, labels, 0.0, 0.06)[0], labels)  # both under 0.06: kept
    assert torch.equal(unsure_tumours_dropped(logits, labels, 0.0, 1.0)[0], labels)   # 1: off
    assert unsure_tumours_dropped(logits, labels, 0.0, 1.0)[1] is None
    both, dropped = unsure_tumours_dropped(logits, labels, 0.99, 0.03)   # either reason drops a component
    assert int((both == 2).sum()) == 0 and [d["voxels"] for d in dropped] == [64, 64]


def test_a_tumour_bias_moves_the_argmax_by_that_many_logits_and_leaves_the_network_output_alone():
    logits = torch.zeros(3, 10, 10, 10)
    logits[1] = 2.0                               # liver everywhere
    logits[2, :, :, :5] = 1.5                     # tumour 0.5 below liver in half the volume
    logits[2, :3, :, :5] = 0.5                    # and 1.5 below it in a part of that half
    assert int((channel_argmax(logits) == 2).sum()) == 0
    biased = tumour_biased(logits, 1.0)
    assert int((channel_argmax(biased) == 2).sum()) == 7 * 10 * 5   # only where it was within 1 logit
    assert float(logits[2].max()) == 1.5                            # the input is not changed
    assert tumour_biased(logits, 0.0) is logits
    assert int((channel_argmax(tumour_biased(logits, -1.0)) == 2).sum()) == 0
