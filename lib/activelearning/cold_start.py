"""Strategy `cold_start`: for when no model exists yet. k-centre greedy over network-free image features
(intensity histogram of the body, a coarse thumbnail): the studies least like anything labelled or being annotated,
so that the first labels cover the variety of the datastore (contrast phases, fatty livers, fields of view)."""

from __future__ import annotations

from monailabel.interfaces.datastore import Datastore

from ..scoring.mc_dropout import UncertaintyScorer
from .base import WindowedStrategy
from .candidates import answer, requested_count
from .fallback import unscored_picks

FEATURE_BUDGET_S = 1.0  # features missing from the cache (the background scorer makes them) computed per request


class ColdStart(WindowedStrategy):
    name = "cold_start"

    def __init__(self, scorer: UncertaintyScorer, window_s: float) -> None:
        super().__init__("Cold start, no model needed: the studies least like those labelled (k-centre over image "
                         "features)", window_s, scorer)

    def pick(self, images: list[str], covered: list[str], request: dict, datastore: Datastore) -> dict:
        picks = unscored_picks(images, covered, requested_count(request), datastore, self.scorer, FEATURE_BUDGET_S)
        progress = self.scorer.progress(datastore)
        return answer(self.name, picks, candidates=len(images), covered=len(covered),
                      image_features=f"{progress['image_features']} of {progress['total']} studies "
                                     f"(background scoring: {progress['activity']})")
