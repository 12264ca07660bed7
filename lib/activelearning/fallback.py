"""What the strategies offer for studies the background scorer has not reached yet (lib.scoring.background):
k-centre over the image features already computed (cold start's signal), then random. Each pick says what
ranked it, so an answer never passes a guess off as a score."""

from __future__ import annotations

import random
import time

import numpy as np
from monailabel.interfaces.datastore import Datastore

from ..scoring.mc_dropout import UncertaintyScorer
from .k_centre import k_centre_greedy


def unscored_picks(images: list[str], covered: list[str], count: int, datastore: Datastore,
                   scorer: UncertaintyScorer, budget_s: float = 0.0) -> list[tuple[str, dict]]:
    """Up to `count` of `images`: k-centre over their image features, away from the covered studies' (features
    missing from the cache are computed now while budget_s lasts), then at random among those without."""
    deadline = time.monotonic() + budget_s
    features = {}
    for image_id in images + covered:
        found = scorer.cached_features(image_id, datastore)
        if found is None and time.monotonic() < deadline:
            found = scorer.image_features(image_id, datastore)
        if found is not None:
            features[image_id] = found
    with_features = [i for i in images if i in features]
    known = [i for i in covered if i in features]
    picks: list[tuple[str, dict]] = []
    if with_features:
        chosen = k_centre_greedy(np.array([features[i] for i in with_features]),
                                 np.array([features[i] for i in known]) if known else None, count)
        picks = [(with_features[k], {"ranked_by": "image_features", "distance": round(d, 4)}) for k, d in chosen]
    rest = [i for i in images if i not in features]
    return picks + [(i, {"ranked_by": "random"}) for i in random.sample(rest, min(count - len(picks), len(rest)))]


def scoring_note(scorer: UncertaintyScorer, datastore: Datastore, scored: int, candidates: int, by: str) -> dict:
    """The `why` entries that say how far scoring is, and what ranked the candidates it has not reached."""
    progress = scorer.progress(datastore)
    note: dict = {"scored_candidates": scored, "scoring": progress}
    if scored < candidates:
        note["fallback"] = (f"{candidates - scored} of {candidates} candidates have no {by} score for this model yet "
                            f"({progress['scored']} of {progress['total']} studies scored; background scoring: "
                            f"{progress['activity']}): they are ranked after the scored ones, by image-feature "
                            f"diversity where features are computed, else at random")
    return note
