"""The label-efficiency benchmark (`liver-tumor bench al`): the annotation loop simulated with an oracle on phantoms.

Per seed: a few randomly chosen studies are labelled; each round trains the UNet with a fixed step budget on the
labelled studies (fine-tuning the previous round's model, as the app's server does; `warm_start=False`: from
scratch), measures Dice (liver, tumour) on held-out phantoms, scores the pool with the app's own signals
(lib.scoring.signals), lets each strategy pick the next studies, and reveals their ground truth. Every
strategy starts from the same labelled set for a seed (cold_start picks its own: it is the strategy for when there
is none), and a model is trained once per (seed, labelled sets so far), so that strategies that agree share it.
The reference is the full pool, trained from scratch for as many steps as the last round's model had in all.
Dice and the share of true lesions found are measured on the working grid. Every acquired study also costs what an
annotator would change to correct the model's label of it at the time (lib.activelearning.effort), and each
strategy's areas under the curves are compared with random's and foreground-aware random's on the same seeds by a
paired bootstrap (lib.bench.paired).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..activelearning.effort import annotation_effort
from ..activelearning.k_centre import k_centre_greedy
from ..activelearning.power_sampling import beta_for, stratified_power_sample
from ..scoring.signals import image_features, mc_dropout_signals
from ..trainers.in_memory import LoopConfig, Study, evaluate, load_studies, predict, train
from .paired import paired_difference

logger = logging.getLogger(__name__)

STRATEGIES = ("random", "fg_random", "first", "mc_dropout", "uncertain_diverse", "cold_start", "clasp_pe")
BASELINES = ("random", "fg_random")  # what a strategy must beat: random, and foreground-aware random
METRICS = ("tumour", "sensitivity", "liver")


@dataclass(frozen=True)
class ALConfig(LoopConfig):
    """How each model is trained (LoopConfig: spacing, steps, crops, learning rate, channels, device), and the
    simulated annotation loop. The default finishes in about half an hour on 2 CPU cores; `full` sizes it for a
    GPU."""

    pool: int = 16
    test: int = 6
    preset: str = "small"
    initial: int = 2
    per_round: int = 2
    rounds: int = 3
    mc_samples: int = 3
    seeds: tuple[int, ...] = (0, 1, 2)
    strategies: tuple[str, ...] = STRATEGIES
    data_seed: int = 3000
    warm_start: bool = True

    @staticmethod
    def full() -> "ALConfig":
        """The seed's network and spacing on clinical-size phantoms (a GPU's work)."""
        return ALConfig(pool=60, test=20, preset="full", spacing=1.0, initial=4, per_round=4, rounds=6, steps=2000,
                        crop=96, channels=(16, 32, 64, 128, 256), mc_samples=5)


def score_pool(net: torch.nn.Module, pool: list[Study], cfg: ALConfig) -> dict[str, dict]:
    return {s.id: mc_dropout_signals(s.image[None], net, cfg.mc_samples, (cfg.spacing,) * 3, (cfg.crop * 2,) * 3,
                                     cfg.device) for s in pool}


def pick(strategy: str, labelled: list[Study], unlabelled: list[Study], k: int, signals: Callable[[], dict],
         rng: np.random.Generator, features: dict[str, np.ndarray]) -> list[str]:
    """The ids strategy picks; signals() gives the pool's scores under the current model (computed once);
    features: each study's network-free image features (cold start)."""
    ids = [s.id for s in unlabelled]
    if strategy == "random":
        return list(rng.choice(ids, size=k, replace=False))
    if strategy == "first":
        return sorted(ids)[:k]
    if strategy == "cold_start":
        existing = np.array([features[s.id] for s in labelled]) if labelled else None
        return [ids[i] for i, _ in k_centre_greedy(np.array([features[s.id] for s in unlabelled]), existing, k)]
    sig = signals()
    if strategy == "fg_random":  # random, weighted by predicted tumour volume (uniform while none is predicted)
        tumour = np.array([sig[i]["predicted_tumour_ml"] for i in ids]) + 1e-3
        weight = tumour + tumour.mean()
        return list(rng.choice(ids, size=k, replace=False, p=weight / weight.sum()))
    if strategy == "mc_dropout":
        return sorted(ids, key=lambda i: sig[i]["score"], reverse=True)[:k]
    if strategy == "clasp_pe":
        scores = {i: sig[i]["class_entropy"] for i in ids}
        return [i for i, _ in stratified_power_sample(ids, scores, k, beta_for(len(labelled)), rng)]
    if strategy == "uncertain_diverse":
        existing = np.array([sig[s.id]["embedding"] for s in labelled])
        feats = np.array([sig[i]["embedding"] for i in ids])
        weights = np.array([sig[i]["score"] for i in ids])
        return [ids[i] for i, _ in k_centre_greedy(feats, existing, k, weights)]
    raise ValueError(f"unknown strategy {strategy!r}: choose from {', '.join(STRATEGIES)}")


def auc(counts: list[int], values: list[float]) -> float:
    """Area under the curve over the labelled-count range, divided by that range (a mean Dice)."""
    return float(np.trapz(values, counts) / (counts[-1] - counts[0])) if len(counts) > 1 else float(values[0])


def run(work: Path, cfg: ALConfig, progress: Callable[[str], None] = print) -> dict:
    started = time.time()
    pool = load_studies(work / "pool", cfg.data_seed, cfg.pool, cfg.preset, cfg.spacing)
    test = load_studies(work / "test", cfg.data_seed + 1, cfg.test, cfg.preset, cfg.spacing)
    features = {s.id: np.array(image_features(s.image)) for s in pool}
    by_id = {s.id: s for s in pool}
    cache: dict[tuple, dict] = {}  # (seed, labelled sets, steps) -> trained net, its Dice, the pool's signals
    timing = {"train": [], "score_per_study": [], "evaluate": []}

    def model(seed: int, history: list[list[str]], steps: int | None = None) -> dict:
        """The model after training on each labelled set of history in turn (warm start: each round fine-tunes
        the previous round's model, as the app's server does; otherwise only the last set counts)."""
        sets = [tuple(sorted(ids)) for ids in (history if cfg.warm_start else history[-1:])]
        key = (seed, tuple(sets), steps)
        if key not in cache:
            start = model(seed, history[:-1])["net"] if cfg.warm_start and len(history) > 1 else None
            t = time.time()
            net = train([by_id[i] for i in history[-1]], cfg, seed + 1000 * (len(sets) - 1), start, steps)
            timing["train"].append(time.time() - t)
            t = time.time()
            cache[key] = {"net": net, "dice": evaluate(net, test, cfg)}
            timing["evaluate"].append(time.time() - t)
        return cache[key]

    def effort(entry: dict, ids: list[str]) -> list[dict]:
        """What an annotator changes to correct this model's labels of these studies into their truth."""
        done = entry.setdefault("effort", {})
        for i in ids:
            if i not in done:
                done[i] = annotation_effort(predict(entry["net"], by_id[i], cfg), by_id[i].label[0].numpy(),
                                            cfg.affine)
        return [done[i] for i in ids]

    def signals(entry: dict) -> Callable[[], dict]:
        def get() -> dict:
            if "signals" not in entry:
                entry["signals"] = score_pool(entry["net"], pool, cfg)
                timing["score_per_study"] += [v["seconds"] for v in entry["signals"].values()]
            return entry["signals"]
        return get

    curves: dict[str, dict[int, dict]] = {s: {} for s in cfg.strategies}
    reference = {}
    for seed in cfg.seeds:
        rng = np.random.default_rng(seed)
        initial = list(rng.choice([s.id for s in pool], size=cfg.initial, replace=False))
        for strategy in cfg.strategies:
            rng_s = np.random.default_rng([seed, STRATEGIES.index(strategy)])
            labelled = pick("cold_start", [], pool, cfg.initial, dict, rng_s, features) if strategy == "cold_start" \
                else list(initial)
            points, history = [], []
            spent = {"ml_changed": 0.0, "lesion_edits": 0}  # the initial set is drawn from nothing: not counted
            for r in range(cfg.rounds + 1):
                history.append(list(labelled))
                entry = model(seed, history)
                points.append({"labelled": len(labelled), "ids": list(labelled), "effort": dict(spent),
                               **{m: entry["dice"][m] for m in METRICS}})
                progress(f"seed {seed} {strategy:>17} round {r}: {len(labelled)} labelled, liver "
                         f"{entry['dice']['liver']:.3f} tumour {entry['dice']['tumour']:.3f} "
                         f"({time.time() - started:.0f} s)")
                if r < cfg.rounds:
                    rest = [s for s in pool if s.id not in labelled]
                    picked = pick(strategy, [by_id[i] for i in labelled], rest, cfg.per_round, signals(entry),
                                  rng_s, features)
                    for e in effort(entry, picked):
                        spent = {k: round(spent[k] + e[k], 3) for k in spent}
                    labelled += picked
            curves[strategy][seed] = points
        # all labels, the same training budget as the last round's model
        budget = cfg.steps * (cfg.rounds + 1) if cfg.warm_start else cfg.steps
        reference[seed] = model(seed, [[s.id for s in pool]], budget)["dice"]
        progress(f"seed {seed} full pool ({cfg.pool}): liver {reference[seed]['liver']:.3f} "
                 f"tumour {reference[seed]['tumour']:.3f} lesions found {reference[seed]['sensitivity']:.2f}")
    return summarise(cfg, curves, reference, timing, time.time() - started)


def summarise(cfg: ALConfig, curves: dict, reference: dict, timing: dict, seconds: float) -> dict:
    ref_tumour = float(np.mean([r["tumour"] for r in reference.values()]))
    table, per_seed_auc = {}, {}
    for strategy, per_seed in curves.items():
        counts = [p["labelled"] for p in next(iter(per_seed.values()))]
        row = {}
        for metric in METRICS:
            aucs = {seed: auc(counts, [p[metric] for p in pts]) for seed, pts in per_seed.items()}
            per_seed_auc[(strategy, metric)] = aucs
            row[f"{metric}_auc"], row[f"{metric}_auc_sd"] = float(np.mean(list(aucs.values()))), \
                float(np.std(list(aucs.values())))
        mean_tumour = np.mean([[p["tumour"] for p in pts] for pts in per_seed.values()], axis=0)
        reached = [c for c, v in zip(counts, mean_tumour) if v >= 0.95 * ref_tumour]
        row["labelled_for_95pct_full_pool_tumour"] = reached[0] if reached else None
        row["effort_ml"] = float(np.mean([pts[-1]["effort"]["ml_changed"] for pts in per_seed.values()]))
        row["effort_lesion_edits"] = float(np.mean([pts[-1]["effort"]["lesion_edits"] for pts in per_seed.values()]))
        table[strategy] = row
    return {
        "config": dataclasses.asdict(cfg),
        "full_pool": {**{m: float(np.mean([r[m] for r in reference.values()])) for m in METRICS},
                      "per_seed": {str(k): {m: v[m] for m in METRICS} for k, v in reference.items()}},
        "table": table,
        "paired": paired_table(curves, per_seed_auc),
        "curves": {s: {str(seed): pts for seed, pts in per.items()} for s, per in curves.items()},
        "cost_s": {k: {"median": float(np.median(v)), "count": len(v)} for k, v in timing.items() if v},
        "seconds": round(seconds, 1),
        "torch_threads": torch.get_num_threads(),
    }


def paired_table(curves: dict, per_seed_auc: dict) -> dict:
    """Each strategy's AUC against each baseline's on the same seeds: the mean difference, its 95% bootstrap
    interval, and whether it beats the baseline (the interval above zero). Empty with fewer than 2 seeds."""
    out: dict = {}
    for strategy in curves:
        for baseline in BASELINES:
            if baseline == strategy or baseline not in curves:
                continue
            seeds = sorted(curves[strategy])
            if len(seeds) < 2:
                continue
            out.setdefault(strategy, {})[f"vs_{baseline}"] = {
                metric: paired_difference([per_seed_auc[(strategy, metric)][s] for s in seeds],
                                          [per_seed_auc[(baseline, metric)][s] for s in seeds])
                for metric in METRICS}
    return out


def plot(result: dict, out: Path) -> Path:
    """Held-out tumour Dice, lesions found and liver Dice against labelled studies (top) and against the
    annotators' cumulative effort, mL changed (bottom); mean of the seeds, band min..max."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(METRICS), figsize=(6 * len(METRICS), 9), squeeze=False)
    for col, metric in enumerate(METRICS):
        for row, by_effort in enumerate((False, True)):
            ax = axes[row][col]
            for strategy, per_seed in result["curves"].items():
                pts = list(per_seed.values())
                y = np.array([[p[metric] for p in s] for s in pts])
                if by_effort:
                    x = np.array([[p["effort"]["ml_changed"] for p in s] for s in pts]).mean(0)
                else:
                    x = np.array([p["labelled"] for p in pts[0]])
                line, = ax.plot(x, y.mean(0), marker="o", label=f"{strategy} (AUC "
                                f"{result['table'][strategy][f'{metric}_auc']:.3f} ± "
                                f"{result['table'][strategy][f'{metric}_auc_sd']:.3f})")
                ax.fill_between(x, y.min(0), y.max(0), color=line.get_color(), alpha=0.12)
            ax.axhline(result["full_pool"][metric], color="k", ls="--", lw=1, label="full pool")
            name = {"tumour": "tumour Dice", "sensitivity": "true lesions found", "liver": "liver Dice"}[metric]
            ax.set(xlabel="annotator's effort: mL changed, cumulative" if by_effort else "labelled studies",
                   ylabel=f"{name} (held-out phantoms)", title=name)
            if row == 0:
                ax.legend(fontsize=7)
    seeds = len(result["config"]["seeds"])
    fig.suptitle(f"Label efficiency: mean of {seeds} seeds, band = min..max across seeds")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def save(result: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
