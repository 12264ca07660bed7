"""Strategy `uncertain_diverse` (batch-aware): k-centre greedy over the network's bottleneck embeddings, each
study's pull weighted by its MC-dropout uncertainty. Studies already labelled and those being annotated by other
clients count as covered, so concurrent annotators, and one asking for several studies, get informative studies
that differ from each other and from what is labelled."""

from __future__ import annotations

import numpy as np
from monailabel.interfaces.datastore import Datastore

from ..scoring.mc_dropout import UncertaintyScorer
from .base import WindowedStrategy
from .candidates import requested_count
from .k_centre import k_centre_greedy


class UncertainDiverse(WindowedStrategy):
    name, needs_model = "uncertain_diverse", True

    def __init__(self, scorer: UncertaintyScorer, window_s: float) -> None:
        super().__init__("Uncertain and different: uncertainty-weighted k-centre over the network's features; "
                         "labelled studies and those other annotators hold count as covered", window_s, scorer)

    def pick(self, images: list[str], covered: list[str], request: dict, datastore: Datastore) -> dict:
        # only scores already computed (by the server's background scorer): the answer never waits for scoring
        count = requested_count(request)
        scored = {i: c for i in images + covered if (c := self.scorer.cached(i, datastore)) is not None}
        candidates = [i for i in images if i in scored]
        known = [i for i in covered if i in scored]
        picks: list[tuple[str, dict]] = []
        if candidates:
            chosen = k_centre_greedy(np.array([scored[i]["embedding"] for i in candidates]),
                                     np.array([scored[i]["embedding"] for i in known]) if known else None, count,
                                     np.array([scored[i]["score"] for i in candidates]))
            picks = [(candidates[k], {"score": scored[candidates[k]]["score"], "distance": round(d, 4),
                                      "ranked_by": self.name}) for k, d in chosen]
        return self.complete(picks, [i for i in images if i not in scored], covered + [i for i, _ in picks], count,
                             datastore, len(candidates), len(images), covered=len(covered))
