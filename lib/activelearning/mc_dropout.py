"""Strategy `mc_dropout`: the studies the model is least sure about (tumour-weighted MC-dropout entropy)."""

from __future__ import annotations

from monailabel.interfaces.datastore import Datastore

from ..scoring.mc_dropout import UncertaintyScorer
from .base import WindowedStrategy
from .candidates import answer, requested_count


class MCDropout(WindowedStrategy):
    name, needs_model = "mc_dropout", True

    def __init__(self, scorer: UncertaintyScorer, window_s: float) -> None:
        super().__init__("Most uncertain studies: MC-dropout entropy around the predicted liver, weighted towards "
                         "tumour", window_s, scorer)

    def pick(self, images: list[str], covered: list[str], request: dict, datastore: Datastore) -> dict:
        # scores come from the background scoring after training; a study not scored yet is scored now
        scores = {i: self.scorer.score(i, datastore)["score"] for i in images}
        ranked = sorted(scores, key=scores.get, reverse=True)
        picks = [(i, {"score": scores[i], "rank": r + 1}) for r, i in enumerate(ranked[:requested_count(request)])]
        return answer(self.name, picks, model=self.scorer.version(), candidates=len(images),
                      top=[{"id": i, "score": scores[i]} for i in ranked[:5]])
