"""An exponential moving average of the weights and batch-norm statistics, validated and published in place of the
last step's weights.

With one study's crops per batch, batch norm's running statistics follow the last few studies, and validation
Dice swings by 0.2 to 0.5 from one epoch to the next (`liver-tumor bench train` showed it for both trainers); the
average of the recent steps does not. Early on the average follows the weights closely (the decay grows as
(1 + n) / (10 + n) up to its setting), so short fine-tuning runs are not held back.
"""

from __future__ import annotations

import torch
from monai.engines.workflow import Engine, Events
from torch.optim.swa_utils import AveragedModel

from ..distributed import unwrap


class WeightAverage:
    def __init__(self, network: torch.nn.Module, decay: float) -> None:
        self.network, self.decay = network, decay

        def average(avg: torch.Tensor, current: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
            d = min(decay, (1 + float(n)) / (10 + float(n)))
            return avg * d + current * (1 - d) if avg.is_floating_point() else current

        self.model = AveragedModel(unwrap(network), avg_fn=average, use_buffers=True).eval()

    @property
    def module(self) -> torch.nn.Module:
        return self.model.module

    def attach(self, trainer: Engine) -> None:
        trainer.add_event_handler(Events.STARTED, self.restart)
        trainer.add_event_handler(Events.ITERATION_COMPLETED, self.update)

    def restart(self, _engine: Engine | None = None) -> None:
        """Start from the weights training starts from (loaded after this object was made)."""
        self.module.load_state_dict(unwrap(self.network).state_dict())
        self.model.n_averaged.zero_()

    def update(self, _engine: Engine | None = None) -> None:
        self.model.update_parameters(unwrap(self.network))
