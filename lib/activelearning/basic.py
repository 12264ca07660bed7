"""Strategies `random` and `first` as MONAI Label has them, offering only free studies (MONAI Label's own offer a
study another annotator holds)."""

from __future__ import annotations

import random

from monailabel.interfaces.datastore import Datastore

from .base import WindowedStrategy
from .candidates import answer, requested_count


class Random(WindowedStrategy):
    name = "random"

    def __init__(self, window_s: float) -> None:
        super().__init__("Random unlabelled studies", window_s)

    def pick(self, images: list[str], covered: list[str], request: dict, datastore: Datastore) -> dict:
        picks = random.sample(images, min(requested_count(request), len(images)))
        return answer(self.name, [(i, {}) for i in picks], candidates=len(images))


class First(WindowedStrategy):
    name = "first"

    def __init__(self, window_s: float) -> None:
        super().__init__("The first unlabelled studies, by id", window_s)

    def pick(self, images: list[str], covered: list[str], request: dict, datastore: Datastore) -> dict:
        images = sorted(images)
        return answer(self.name, [(i, {}) for i in images[:requested_count(request)]], candidates=len(images))
