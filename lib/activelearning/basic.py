"""Strategies `random` and `first` as MONAI Label has them, offering only what candidates() allows (MONAI Label's
own offer a study another annotator holds)."""

from __future__ import annotations

import random

from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.strategy import Strategy

from .candidates import answer, candidates, requested_count


class Random(Strategy):
    def __init__(self, window_s: float) -> None:
        super().__init__("Random unlabelled studies")
        self.window_s = window_s

    def __call__(self, request, datastore: Datastore):
        images = candidates(request, datastore, self.window_s)
        if not images:
            return None
        picks = random.sample(images, min(requested_count(request), len(images)))
        return answer("random", [(i, {}) for i in picks], candidates=len(images))


class First(Strategy):
    def __init__(self, window_s: float) -> None:
        super().__init__("The first unlabelled studies, by id")
        self.window_s = window_s

    def __call__(self, request, datastore: Datastore):
        images = sorted(candidates(request, datastore, self.window_s))
        if not images:
            return None
        return answer("first", [(i, {}) for i in images[:requested_count(request)]], candidates=len(images))
