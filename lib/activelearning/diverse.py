"""Strategy `uncertain_diverse` (batch-aware): k-centre greedy over the network's bottleneck embeddings, each
study's pull weighted by its MC-dropout uncertainty. Studies already labelled and those being annotated by other
clients count as covered, so concurrent annotators, and one asking for several studies, get informative studies
that differ from each other and from what is labelled."""

from __future__ import annotations

import numpy as np
from monailabel.interfaces.datastore import Datastore

from ..scoring.mc_dropout import UncertaintyScorer
from .base import WindowedStrategy
from .candidates import answer, requested_count
from .k_centre import k_centre_greedy


class UncertainDiverse(WindowedStrategy):
    name, needs_model = "uncertain_diverse", True

    def __init__(self, scorer: UncertaintyScorer, window_s: float) -> None:
        super().__init__("Uncertain and different: uncertainty-weighted k-centre over the network's features; "
                         "labelled studies and those other annotators hold count as covered", window_s, scorer)

    def pick(self, images: list[str], covered: list[str], request: dict, datastore: Datastore) -> dict:
        scored = {i: self.scorer.score(i, datastore) for i in images + covered}
        feats = np.array([scored[i]["embedding"] for i in images])
        existing = np.array([scored[i]["embedding"] for i in covered]) if covered else None
        weights = np.array([scored[i]["score"] for i in images])
        picks = k_centre_greedy(feats, existing, requested_count(request), weights)
        return answer(self.name,
                      [(images[k], {"score": scored[images[k]]["score"], "distance": round(d, 4)}) for k, d in picks],
                      model=self.scorer.version(), candidates=len(images), covered=len(covered))
