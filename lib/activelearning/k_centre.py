"""k-centre greedy selection: the strategies' way of picking studies that differ from what is covered, over any
features (network embeddings or image features), weighted by uncertainty when there is one."""

from __future__ import annotations

import numpy as np


def k_centre_greedy(features: np.ndarray, existing: np.ndarray | None, k: int,
                    weights: np.ndarray | None = None) -> list[tuple[int, float]]:
    """Pick k rows of features, each time the one that maximises weight x distance to the nearest already chosen
    (or existing) row: far from what is covered, and informative when weights are uncertainties. Returns
    (index, distance at pick); with nothing covered yet every distance is 1: the first pick is the heaviest, the
    most typical one among equals."""
    n = len(features)
    weights = np.ones(n) if weights is None else np.asarray(weights, float)
    nearest = np.full(n, np.inf)
    if existing is not None and len(existing):
        nearest = np.min(np.linalg.norm(features[:, None] - existing[None], axis=2), axis=1)
    picks: list[tuple[int, float]] = []
    for _ in range(min(k, n)):
        distance = np.where(np.isinf(nearest), 1.0, nearest / max(float(np.max(nearest[~np.isinf(nearest)],
                                                                               initial=0.0)), 1e-8))
        gain = weights * distance
        if not picks and np.isinf(nearest).all():  # nothing covered yet: among equals, the most typical study
            gain = gain - 1e-6 * np.linalg.norm(features - features.mean(0), axis=1)
        gain[[i for i, _ in picks]] = -np.inf
        best = int(np.argmax(gain))
        picks.append((best, float(distance[best])))
        nearest = np.minimum(nearest, np.linalg.norm(features - features[best], axis=1))
    return picks
