"""Strategy `mc_dropout`: the study the model is least sure about (MC-dropout predictive entropy)."""

from __future__ import annotations

from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.strategy import Strategy

from ..errors import ModelUnavailable
from ..scoring.mc_dropout import UncertaintyScorer


class MCDropout(Strategy):
    def __init__(self, scorer: UncertaintyScorer) -> None:
        super().__init__("Most uncertain study: MC-dropout predictive entropy around the predicted liver")
        self.scorer = scorer

    def __call__(self, request, datastore: Datastore):
        images = datastore.get_unlabeled_images()
        if not images:
            return None
        if self.scorer.version() is None:
            raise ModelUnavailable("the mc_dropout strategy needs a model: train one or use random")
        # scores come from the background scoring after training; a study not scored yet is scored now
        scores = {image_id: self.scorer.score(image_id, datastore)["score"] for image_id in images}
        ranked = sorted(scores, key=scores.get, reverse=True)
        return {"id": ranked[0], "score": scores[ranked[0]],
                "why": {"strategy": "mc_dropout", "model": self.scorer.version(),
                        "top": [{"id": i, "score": scores[i]} for i in ranked[:5]]}}
