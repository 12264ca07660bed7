"""The learning rate over a training run: constant (the seed's), or a cosine from `learning_rate` down to a
hundredth of it over the run's epochs.

Written here rather than with MONAI's LrScheduleHandler: that steps a torch scheduler from the scheduler's own
counter, which a resumed run (lib.trainers.resume) would start again from the top. Here the rate is a function of
the trainer's epoch, which resuming restores, so a resumed run goes on at the rate it stopped at.
"""

from __future__ import annotations

import math

import torch
from monai.engines.workflow import Engine, Events

FLOOR = 0.01  # the cosine ends at this fraction of the starting rate, not at 0, so the last epoch still learns


def cosine_factor(epoch: int, epochs: int) -> float:
    """The fraction of the starting rate for 0-based `epoch` of `epochs`: 1 at the first, FLOOR at the last."""
    if epochs <= 1:
        return 1.0
    return FLOOR + (1 - FLOOR) * 0.5 * (1 + math.cos(math.pi * min(epoch, epochs - 1) / (epochs - 1)))


class CosineLearningRate:
    """Sets every parameter group's rate at the start of each epoch from the trainer's epoch."""

    def __init__(self, optimizer: torch.optim.Optimizer, learning_rate: float, epochs: int) -> None:
        self.optimizer, self.learning_rate, self.epochs = optimizer, learning_rate, epochs

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self)

    def __call__(self, engine: Engine) -> None:
        rate = self.learning_rate * cosine_factor(engine.state.epoch - 1, self.epochs)  # state.epoch counts from 1
        for group in self.optimizer.param_groups:
            group["lr"] = rate
