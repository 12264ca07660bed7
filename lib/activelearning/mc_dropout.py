"""Strategy `mc_dropout`: the studies the model is least sure about (tumour-weighted MC-dropout entropy)."""

from __future__ import annotations

from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.strategy import Strategy

from ..errors import ModelUnavailable
from ..scoring.mc_dropout import UncertaintyScorer
from .candidates import answer, candidates, requested_count


class MCDropout(Strategy):
    def __init__(self, scorer: UncertaintyScorer, window_s: float) -> None:
        super().__init__("Most uncertain studies: MC-dropout entropy around the predicted liver, weighted towards "
                         "tumour")
        self.scorer, self.window_s = scorer, window_s

    def __call__(self, request, datastore: Datastore):
        images = candidates(request, datastore, self.window_s)
        if not images:
            return None
        if self.scorer.version() is None:
            raise ModelUnavailable("the mc_dropout strategy needs a model: train one, or use cold_start or random")
        # scores come from the background scoring after training; a study not scored yet is scored now
        scores = {i: self.scorer.score(i, datastore)["score"] for i in images}
        ranked = sorted(scores, key=scores.get, reverse=True)
        picks = [(i, {"score": scores[i], "rank": r + 1}) for r, i in enumerate(ranked[:requested_count(request)])]
        return answer("mc_dropout", picks, model=self.scorer.version(), candidates=len(images),
                      top=[{"id": i, "score": scores[i]} for i in ranked[:5]])
