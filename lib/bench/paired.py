"""Paired comparison of two strategies over the same seeds: the mean difference of a per-seed measure (an area
under a learning curve) and its percentile bootstrap interval, seeds resampled with replacement. A strategy beats
another only when the whole interval lies above zero."""

from __future__ import annotations

from typing import Sequence

import numpy as np

RESAMPLES = 10_000
LEVEL = 0.95


def paired_difference(a: Sequence[float], b: Sequence[float], resamples: int = RESAMPLES, level: float = LEVEL,
                      seed: int = 0) -> dict:
    """a[i] and b[i] were measured on seed i. Returns the mean of a - b, its interval, and the verdict."""
    if len(a) != len(b):
        raise ValueError(f"paired values need the same seeds: {len(a)} against {len(b)}")
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if len(d) < 2:
        raise ValueError("a bootstrap interval needs at least 2 seeds")
    means = d[np.random.default_rng(seed).integers(0, len(d), (resamples, len(d)))].mean(1)
    low, high = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    verdict = "better" if low > 0 else "worse" if high < 0 else "undecided"
    return {"mean": round(float(d.mean()), 5), "low": round(float(low), 5), "high": round(float(high), 5),
            "seeds": int(len(d)), "level": level, "verdict": verdict}
