"""The strategies' machinery: k-centre greedy, the serve window, the uncertainty signal, and the label-efficiency
benchmark end to end on a tiny configuration."""

import json

import numpy as np
import pytest
import torch

from lib.activelearning.candidates import served_to_others
from lib.activelearning.k_centre import k_centre_greedy
from lib.model.network import build_unet
from lib.scoring.signals import mc_dropout_signals, tumour_weighted_uncertainty


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


def test_the_benchmark_machinery_on_a_tiny_configuration(tmp_path):
    from lib.bench.active_learning import STRATEGIES, ALConfig, plot, run, save

    cfg = ALConfig(pool=5, test=2, spacing=8.0, initial=1, per_round=1, rounds=2, steps=2, crop=16,
                   crops_per_step=1, channels=(4, 8, 16), mc_samples=2, seeds=(0, 1), device="cpu")
    result = run(tmp_path / "work", cfg, progress=lambda _: None)
    save(result, tmp_path / "al.json")
    plot(result, tmp_path / "al.png")
    assert (tmp_path / "al.png").stat().st_size > 10_000
    saved = json.loads((tmp_path / "al.json").read_text())
    assert set(saved["curves"]) == set(STRATEGIES) and set(saved["table"]) == set(STRATEGIES)
    pool = {f"phantom_3000_{i:03d}" for i in range(5)}
    for strategy, per_seed in saved["curves"].items():
        assert set(per_seed) == {"0", "1"}
        for points in per_seed.values():
            assert [p["labelled"] for p in points] == [1, 2, 3]
            for before, after in zip(points, points[1:]):  # each round adds a new study from the pool
                assert set(before["ids"]) < set(after["ids"]) <= pool and len(set(after["ids"])) == len(after["ids"])
            assert all(0 <= p["liver"] <= 1 and 0 <= p["tumour"] <= 1 for p in points)
    # every strategy but cold_start starts from the seed's same random studies
    starts = {s: saved["curves"][s]["0"][0]["ids"] for s in STRATEGIES}
    assert len({tuple(v) for s, v in starts.items() if s != "cold_start"}) == 1
    assert saved["curves"]["first"]["0"][1]["ids"][-1] == min(pool - set(starts["first"]))
    row = saved["table"]["random"]
    assert {"tumour_auc", "tumour_auc_sd", "liver_auc", "labelled_for_95pct_full_pool_tumour"} <= set(row)
    assert saved["cost_s"]["score_per_study"]["count"] > 0


@pytest.mark.parametrize("bad", [["--strategies", "nope"], ["--pool", "3", "--rounds", "4"]])
def test_bench_al_refuses_bad_arguments_in_one_line(bad, capsys):
    from lib.cli.main import main

    assert main(["bench", "al", *bad]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error" in err
