"""What every strategy of this app does before it ranks: take the candidates (unlabelled, not held by another
client) and what is covered already (labelled, or held by another client), and check there is a model when it
needs one."""

from __future__ import annotations

from abc import abstractmethod

from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.strategy import Strategy

from ..errors import ModelUnavailable
from ..scoring.mc_dropout import UncertaintyScorer
from .candidates import split_unlabelled


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
