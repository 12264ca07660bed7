"""Strategy `clasp_pe`: class-stratified, scheduled power-noised predictive entropy (ClaSP PE), on the MC-dropout
class entropies the background scorer keeps (lib.scoring.signals.class_entropy); the rule is in
lib.activelearning.power_sampling."""

from __future__ import annotations

import numpy as np
from monailabel.interfaces.datastore import Datastore

from ..scoring.mc_dropout import UncertaintyScorer
from .base import WindowedStrategy
from .candidates import requested_count
from .power_sampling import beta_for, stratified_power_sample


class ClaSPPE(WindowedStrategy):
    name, needs_model = "clasp_pe", True

    def __init__(self, scorer: UncertaintyScorer, window_s: float) -> None:
        super().__init__("ClaSP PE: the query split between tumour and liver, each slot power-sampled on that "
                         "class's MC-dropout entropy, sharper as the labelled set grows", window_s, scorer)

    def pick(self, images: list[str], covered: list[str], request: dict, datastore: Datastore) -> dict:
        # only scores already computed (by the server's background scorer): the answer never waits for scoring
        count = requested_count(request)
        scores = {i: c["class_entropy"] for i in images if (c := self.scorer.cached(i, datastore)) is not None}
        labelled = len(datastore.get_labeled_images())
        beta = beta_for(labelled)
        chosen = stratified_power_sample(list(scores), scores, count, beta, np.random.default_rng())
        picks = [(i, {"class_entropy": scores[i], "slot": c, "beta": beta, "ranked_by": self.name})
                 for i, c in chosen]
        return self.complete(picks, [i for i in images if i not in scores], covered, count, datastore, len(scores),
                             len(images), labelled=labelled)
