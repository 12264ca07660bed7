"""Class-stratified power sampling, the selection rule of ClaSP PE (TMLR 2026, arXiv 2601.13677), for whole studies.

The query is split between the classes in turn, the rarest first (tumour, then liver, ...): each slot takes a
study by power sampling on that class's score, P(study) proportional to score^beta (Gumbel top-1 of
beta * log score), without replacement. The noise explores where a greedy top-k would take near-duplicates; beta is
scheduled to grow with the labelled set (beta = 1 + labelled / BETA_PER_STUDIES), so the query leans on the scores
more as the model that made them improves. The paper queries patches with nnU-Net; what is written here is our
reading of its rule for studies (no code of it is used).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

CLASSES = ("tumour", "liver")  # the order slots are given in: the rare class first
BETA_PER_STUDIES = 4.0


def beta_for(labelled: int) -> float:
    """The power schedule: 1 with nothing labelled, one more for every BETA_PER_STUDIES labelled studies."""
    return 1.0 + labelled / BETA_PER_STUDIES


def stratified_power_sample(ids: Sequence[str], scores: dict[str, dict[str, float]], k: int, beta: float,
                            rng: np.random.Generator, classes: Sequence[str] = CLASSES) -> list[tuple[str, str]]:
    """Up to k of `ids` as (id, the class whose slot took it); scores[id][class] >= 0 (0: nothing of that class)."""
    if beta <= 0:
        raise ValueError(f"beta must be positive, got {beta}")
    left = list(ids)
    picks: list[tuple[str, str]] = []
    for slot in range(min(k, len(left))):
        c = classes[slot % len(classes)]
        s = np.array([scores[i][c] for i in left], dtype=np.float64)
        if not (s > 0).any():  # no study shows this class: the slot goes to the classes that are seen
            shown = [d for d in classes if any(scores[i][d] > 0 for i in left)]
            c = shown[0] if shown else c
            s = np.array([scores[i][c] for i in left], dtype=np.float64)
        keys = beta * np.log(np.maximum(s, 1e-12)) + rng.gumbel(size=len(s))
        picks.append((left.pop(int(np.argmax(keys))), c))
    return picks
