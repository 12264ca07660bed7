"""Strategy `cold_start`: for when no model exists yet. k-centre greedy over network-free image features
(intensity histogram of the body, a coarse thumbnail): the studies least like anything labelled or being annotated,
so that the first labels cover the variety of the datastore (contrast phases, fatty livers, fields of view)."""

from __future__ import annotations

import numpy as np
from monailabel.interfaces.datastore import Datastore

from ..scoring.mc_dropout import UncertaintyScorer
from .base import WindowedStrategy
from .candidates import answer, requested_count
from .k_centre import k_centre_greedy


class ColdStart(WindowedStrategy):
    name = "cold_start"

    def __init__(self, scorer: UncertaintyScorer, window_s: float) -> None:
        super().__init__("Cold start, no model needed: the studies least like those labelled (k-centre over image "
                         "features)", window_s, scorer)

    def pick(self, images: list[str], covered: list[str], request: dict, datastore: Datastore) -> dict:
        feats = {i: self.scorer.image_features(i, datastore) for i in images + covered}
        existing = np.array([feats[i] for i in covered]) if covered else None
        picks = k_centre_greedy(np.array([feats[i] for i in images]), existing, requested_count(request))
        return answer(self.name, [(images[k], {"distance": round(d, 4)}) for k, d in picks],
                      candidates=len(images), covered=len(covered))
