"""What every strategy of this app does before it ranks: take the candidates (unlabelled, not held by another
client) and what is covered already (labelled, or held by another client), and check there is a model when it
needs one."""

from __future__ import annotations

from abc import abstractmethod

from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.strategy import Strategy

from ..errors import ModelUnavailable
from ..scoring.mc_dropout import UncertaintyScorer
from .candidates import answer, split_unlabelled
from .fallback import scoring_note, unscored_picks


class WindowedStrategy(Strategy):
    name = ""
    needs_model = False

    def __init__(self, description: str, window_s: float, scorer: UncertaintyScorer | None = None) -> None:
        super().__init__(description)
        self.window_s, self.scorer = window_s, scorer

    def __call__(self, request, datastore: Datastore):
        images, held = split_unlabelled(request, datastore, self.window_s)
        if not images:
            return None
        if self.needs_model and (self.scorer is None or self.scorer.version() is None):
            raise ModelUnavailable(f"the {self.name} strategy needs a model: train one, or use cold_start or random")
        return self.pick(images, datastore.get_labeled_images() + held, request, datastore)

    @abstractmethod
    def pick(self, images: list[str], covered: list[str], request: dict, datastore: Datastore) -> dict:
        """The answer for these candidates (see candidates.answer); covered: labelled or held by others."""

    def complete(self, picks: list[tuple[str, dict]], unscored: list[str], away_from: list[str], count: int,
                 datastore: Datastore, scored: int, candidates: int, **why) -> dict:
        """The answer of a strategy that ranks cached scores: its picks, then up to `count` of the `unscored`
        candidates ranked by unscored_picks away from `away_from`, and how far scoring is (`scored` of
        `candidates`)."""
        if len(picks) < count:
            picks = picks + unscored_picks(unscored, away_from, count - len(picks), datastore, self.scorer)
        return answer(self.name, picks, model=self.scorer.version(), candidates=candidates, **why,
                      **scoring_note(self.scorer, datastore, scored, candidates, self.name))
