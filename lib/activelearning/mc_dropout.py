"""Strategy `mc_dropout`: the studies the model is least sure about (tumour-weighted MC-dropout entropy)."""

from __future__ import annotations

from monailabel.interfaces.datastore import Datastore

from ..scoring.mc_dropout import UncertaintyScorer
from .base import WindowedStrategy
from .candidates import requested_count


class MCDropout(WindowedStrategy):
    name, needs_model = "mc_dropout", True

    def __init__(self, scorer: UncertaintyScorer, window_s: float) -> None:
        super().__init__("Most uncertain studies: MC-dropout entropy around the predicted liver, weighted towards "
                         "tumour", window_s, scorer)

    def pick(self, images: list[str], covered: list[str], request: dict, datastore: Datastore) -> dict:
        # only scores already computed (by the server's background scorer): the answer never waits for scoring
        count = requested_count(request)
        scores = {i: c["score"] for i in images if (c := self.scorer.cached(i, datastore)) is not None}
        ranked = sorted(scores, key=scores.get, reverse=True)
        picks = [(i, {"score": scores[i], "rank": r + 1, "ranked_by": self.name})
                 for r, i in enumerate(ranked[:count])]
        return self.complete(picks, [i for i in images if i not in scores], covered, count, datastore, len(scores),
                             len(images), top=[{"id": i, "score": scores[i]} for i in ranked[:5]])
