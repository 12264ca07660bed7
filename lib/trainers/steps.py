"""One training epoch's steps: how many samples (crops) they saw and how long they took, data loading included and
validation not (it runs after the last step). For samples per second."""

from __future__ import annotations

import time

from monai.engines.workflow import Engine, Events


class EpochSteps:
    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.samples = 0

    def attach(self, trainer: Engine) -> "EpochSteps":
        trainer.add_event_handler(Events.EPOCH_STARTED, self._started)
        trainer.add_event_handler(Events.ITERATION_COMPLETED, self._step)
        return self

    def _started(self, _engine: Engine) -> None:
        self.start = self.last = time.perf_counter()
        self.samples = 0

    def _step(self, engine: Engine) -> None:
        out = engine.state.output
        self.samples += len(out) if isinstance(out, list) else 1  # MONAI decollates a batch into its samples
        self.last = time.perf_counter()

    @property
    def seconds(self) -> float:
        return self.last - self.start
