"""The strategies' machinery: k-centre greedy, the serve window, the uncertainty signals, ClaSP PE's stratified
power sampling, annotation effort, the paired bootstrap, and the label-efficiency benchmark end to end on a tiny
configuration."""

import json

import numpy as np
import pytest
import torch

from lib.activelearning.candidates import served_to_others
from lib.activelearning.effort import annotation_effort
from lib.activelearning.k_centre import k_centre_greedy
from lib.activelearning.power_sampling import beta_for, stratified_power_sample
from lib.bench.paired import paired_difference
from lib.model.network import build_unet
from lib.scoring.signals import class_entropy, mc_dropout_signals, tumour_weighted_uncertainty


def test_k_centre_greedy_covers_the_clusters_and_follows_the_weights():
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [10, 0], [0, 10]], float)
    points = np.concatenate([c + rng.normal(0, 0.1, (5, 2)) for c in centres])
    picks = [i for i, _ in k_centre_greedy(points, None, 3)]
    assert sorted(i // 5 for i in picks) == [0, 1, 2]  # one per cluster, never two near-duplicates
    covered = k_centre_greedy(points, points[:5], 2)  # cluster 0 labelled already
    assert all(i // 5 != 0 for i, _ in covered)
    weights = np.ones(15)
    weights[12] = 5.0
    assert k_centre_greedy(points, None, 1, weights)[0][0] == 12  # the most uncertain first


def test_the_serve_window_holds_a_study_for_its_client_only():
    info = {"served": {"ts": 1000.0, "client_id": "anna"}}
    assert served_to_others(info, "ben", window_s=600, now=1300)
    assert not served_to_others(info, "anna", window_s=600, now=1300)  # anna may be offered it again
    assert not served_to_others(info, "ben", window_s=600, now=1700)  # the window is over
    assert not served_to_others({}, "ben", window_s=600, now=1300)


def test_uncertainty_is_a_mean_not_a_sum_and_weighs_tumour():
    def probs(shape, liver_p):
        p = np.zeros((3, *shape), np.float32)
        p[0], p[1] = 1 - liver_p, liver_p
        return p

    small, big = probs((20, 20, 20), 0.0), probs((40, 40, 40), 0.0)
    small[:, 5:15, 5:15, 5:15] = np.array([0.2, 0.7, 0.1])[:, None, None, None]
    big[:, 5:35, 5:35, 5:35] = np.array([0.2, 0.7, 0.1])[:, None, None, None]
    coarse = (20, 20, 20)  # voxels wider than the margin: the region is the predicted liver alone
    a, b = tumour_weighted_uncertainty(small, coarse), tumour_weighted_uncertainty(big, coarse)
    assert 0 < a <= 1 and b == pytest.approx(a, rel=1e-5)  # a 27 times bigger liver, equally unsure: same score
    assert 0 < tumour_weighted_uncertainty(small, (2, 2, 2)) < a  # the certain margin around it counts too
    tumourous = small.copy()
    tumourous[:, 8:12, 8:12, 8:12] = np.array([0.2, 0.4, 0.4])[:, None, None, None]
    assert tumour_weighted_uncertainty(tumourous, coarse) > a


def test_mc_dropout_signals_are_reproducible_and_carry_an_embedding():
    torch.manual_seed(0)
    net = build_unet(0.2, (4, 8, 16)).eval()
    x = torch.rand(1, 1, 32, 32, 32)
    first = mc_dropout_signals(x, net, 3, (4, 4, 4), (32, 32, 32), "cpu")
    again = mc_dropout_signals(x, net, 3, (4, 4, 4), (32, 32, 32), "cpu")
    assert first["score"] == again["score"] and first["embedding"] == again["embedding"]
    assert len(first["embedding"]) == 16 and abs(np.linalg.norm(first["embedding"]) - 1) < 1e-3
    assert first["class_entropy"] == again["class_entropy"] and set(first["class_entropy"]) == {"liver", "tumour"}


def test_class_entropy_is_the_mean_over_each_class_stratum():
    mean = np.zeros((3, 10, 10, 10), np.float32)
    mean[0] = 1.0
    mean[:, :5] = np.array([0.0, 1.0, 0.0])[:, None, None, None]  # certain liver
    mean[:, :5, :2, :2] = np.array([0.0, 0.7, 0.3])[:, None, None, None]  # suspected tumour: in both strata
    h = -(0.7 * np.log(0.7) + 0.3 * np.log(0.3)) / np.log(3)
    out = class_entropy(mean)
    assert out["tumour"] == pytest.approx(h, abs=1e-5)  # tumour never wins, its stratum is where it is suspected
    assert out["liver"] == pytest.approx(h * 20 / 500, abs=1e-5)
    mean[2] = 0.0
    mean[1, :5, :2, :2] = 1.0
    assert class_entropy(mean)["tumour"] == 0.0  # no tumour seen or suspected: nothing in its stratum


def test_clasp_pe_splits_the_query_between_classes_and_sharpens_as_labels_grow():
    scores = {f"s{i}": {"tumour": t, "liver": v} for i, (t, v) in
              enumerate([(0.9, 0.1), (0.8, 0.1), (0.1, 0.9), (0.1, 0.8), (0.05, 0.05), (0.05, 0.05)])}
    ids = list(scores)
    picks = stratified_power_sample(ids, scores, 2, beta=50.0, rng=np.random.default_rng(0))
    assert picks == [("s0", "tumour"), ("s2", "liver")]  # a sharp power: each slot takes its class's top study
    assert len({i for i, _ in stratified_power_sample(ids, scores, 6, 1.0, np.random.default_rng(1))}) == 6
    first = {b: [stratified_power_sample(ids, scores, 1, b, np.random.default_rng(r))[0][0] for r in range(400)]
             for b in (1.0, 8.0)}
    # P(s0) = 0.9^b / sum(t^b): 0.45 at b = 1, 0.72 at b = 8 (where s1 takes nearly all the rest)
    assert abs(first[1.0].count("s0") / 400 - 0.45) < 0.07 and abs(first[8.0].count("s0") / 400 - 0.72) < 0.07
    assert beta_for(0) == 1.0 and beta_for(8) > beta_for(4) > 1.0
    no_tumour = {i: {"tumour": 0.0, "liver": v["liver"]} for i, v in scores.items()}
    assert stratified_power_sample(ids, no_tumour, 1, 50.0, np.random.default_rng(0)) == [("s2", "liver")]


def test_annotation_effort_counts_what_the_annotator_changes():
    truth = np.zeros((20, 20, 20), np.uint8)
    truth[2:18, 2:18, 2:18] = 1
    truth[4:8, 4:8, 4:8] = 2  # found by the model
    truth[12:15, 12:15, 12:15] = 2  # missed: to be drawn
    model = truth.copy()
    model[12:15, 12:15, 12:15] = 1
    model[4:8, 4:8, 4:6] = 1  # half of the first lesion missed
    model[3:5, 14:16, 3:5] = 2  # a false positive: to be deleted
    effort = annotation_effort(model, truth, np.diag([2.0, 2.0, 2.0, 1.0]))
    assert effort["voxels_changed"] == 27 + 32 + 8
    assert effort["ml_changed"] == pytest.approx(67 * 8 / 1000)
    assert (effort["lesions_drawn"], effort["lesions_deleted"], effort["lesion_edits"]) == (1, 1, 2)
    assert effort["tumour_added_ml"] == pytest.approx(59 * 8 / 1000) and effort["liver_dice"] < 1
    assert annotation_effort(truth, truth, np.eye(4))["voxels_changed"] == 0
    with pytest.raises(ValueError, match="differ in shape"):
        annotation_effort(truth[:10], truth, np.eye(4))


def test_the_paired_bootstrap_on_numbers_with_a_known_answer():
    same_gain = paired_difference([0.6, 0.5, 0.7, 0.4, 0.55], [0.5, 0.4, 0.6, 0.3, 0.45])
    assert same_gain["low"] == pytest.approx(0.1) and same_gain["high"] == pytest.approx(0.1)
    assert same_gain["verdict"] == "better"
    # two seeds, differences 0 and 1: resampled means are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4
    two = paired_difference([0.0, 1.0], [0.0, 0.0])
    assert (two["low"], two["mean"], two["high"], two["verdict"]) == (0.0, 0.5, 1.0, "undecided")
    # differences 1..5: the mean 3, its interval about 3 -/+ 1.96 x 1.41 / sqrt(5)
    spread = paired_difference([1, 2, 3, 4, 5], [0, 0, 0, 0, 0])
    assert spread["low"] == pytest.approx(1.76, abs=0.15) and spread["high"] == pytest.approx(4.24, abs=0.15)
    assert paired_difference([0, 0, 0], [1, 2, 1])["verdict"] == "worse"
    with pytest.raises(ValueError, match="same seeds"):
        paired_difference([1, 2], [1, 2, 3])


def test_the_benchmark_machinery_on_a_tiny_configuration(tmp_path):
    from lib.bench.active_learning import ALConfig, plot, run, save

    # a strategy of each kind: baselines, by position, by image features, by MC-dropout signals (the app's server
    # tests run mc_dropout and uncertain_diverse)
    strategies = ("random", "fg_random", "first", "cold_start", "clasp_pe")
    cfg = ALConfig(pool=5, test=2, spacing=8.0, initial=1, per_round=1, rounds=2, steps=2, crop=16,
                   crops_per_step=1, channels=(4, 8, 16), mc_samples=2, seeds=(0, 1), device="cpu",
                   strategies=strategies)
    result = run(tmp_path / "work", cfg, progress=lambda _: None)
    save(result, tmp_path / "al.json")
    plot(result, tmp_path / "al.png")
    assert (tmp_path / "al.png").stat().st_size > 10_000
    saved = json.loads((tmp_path / "al.json").read_text())
    assert set(saved["curves"]) == set(strategies) and set(saved["table"]) == set(strategies)
    pool = {f"phantom_3000_{i:03d}" for i in range(5)}
    for strategy, per_seed in saved["curves"].items():
        assert set(per_seed) == {"0", "1"}
        for points in per_seed.values():
            assert [p["labelled"] for p in points] == [1, 2, 3]
            for before, after in zip(points, points[1:]):  # each round adds a new study from the pool
                assert set(before["ids"]) < set(after["ids"]) <= pool and len(set(after["ids"])) == len(after["ids"])
            assert all(0 <= p["liver"] <= 1 and 0 <= p["tumour"] <= 1 and 0 <= p["sensitivity"] <= 1 for p in points)
            spent = [p["effort"]["ml_changed"] for p in points]
            assert spent[0] == 0 and all(a <= b for a, b in zip(spent, spent[1:]))  # effort adds up per study
    # every strategy but cold_start starts from the seed's same random studies
    starts = {s: saved["curves"][s]["0"][0]["ids"] for s in strategies}
    assert len({tuple(v) for s, v in starts.items() if s != "cold_start"}) == 1
    assert saved["curves"]["first"]["0"][1]["ids"][-1] == min(pool - set(starts["first"]))
    row = saved["table"]["random"]
    assert {"tumour_auc", "tumour_auc_sd", "liver_auc", "labelled_for_95pct_full_pool_tumour"} <= set(row)
    assert saved["cost_s"]["score_per_study"]["count"] > 0
    paired = saved["paired"]["clasp_pe"]
    assert set(paired) == {"vs_random", "vs_fg_random"} and "random" not in saved["paired"]["fg_random"]
    assert paired["vs_random"]["tumour"]["seeds"] == 2 and paired["vs_random"]["liver"]["verdict"] in (
        "better", "worse", "undecided")


@pytest.mark.parametrize("bad", [["--strategies", "nope"], ["--pool", "3", "--rounds", "4"]])
def test_bench_al_refuses_bad_arguments_in_one_line(bad, capsys):
    from lib.cli.main import main

    assert main(["bench", "al", *bad]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error" in err
