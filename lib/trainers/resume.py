"""What a stopped or killed training run needs to go on: after every epoch rank 0 writes the weights, the
optimizer, the epoch and the publisher's record to one file, atomically (MONAI's CheckpointSaver keeps the weights
only and names files by epoch). `resume: true` in a train request loads it at the start, on every rank."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import torch
from monai.engines.workflow import Engine, Events

from .. import distributed
from ..data.atomic import write_atomic
from ..distributed import unwrap
from ..model.network import build_unet
from .averaging import WeightAverage

logger = logging.getLogger(__name__)
FILENAME = "resume.pt"


class ResumePoint:
    def __init__(self, path: Path, trainer: Engine, network: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 record: Callable[[], dict], run_id: str, average: WeightAverage | None = None) -> None:
        self.path, self.trainer, self.network, self.optimizer = Path(path), trainer, network, optimizer
        self.record, self.run_id, self.average = record, run_id, average

    def attach(self) -> None:
        if distributed.rank() == 0:
            self.trainer.add_event_handler(Events.EPOCH_COMPLETED, self.save)

    def save(self, engine: Engine) -> None:
        state = {"model": unwrap(self.network).state_dict(), "optimizer": self.optimizer.state_dict(),
                 "epoch": engine.state.epoch, "iteration": engine.state.iteration, "record": self.record(),
                 "run_id": self.run_id,
                 "average": self.average.model.state_dict() if self.average is not None else None}
        write_atomic(self.path, lambda p: torch.save(state, p))


def read(path: Path) -> dict:
    """Rank 0 reads the file and every rank gets its content (other machines may not see rank 0's disk)."""
    state = None
    if distributed.rank() == 0:
        if not path.exists():
            state = {"error": f"no run to resume: {path} does not exist (it is written after each epoch)"}
        else:
            state = torch.load(path, map_location="cpu", weights_only=False)
    state = distributed.from_rank0(state)
    if "error" in state:
        raise FileNotFoundError(state["error"])
    return state


def averaged_network(state: dict) -> torch.nn.Module:
    """The network a resume point holds: the moving average of its weights (what validation measures) where the run
    kept one, else its weights."""
    network = build_unet()
    average = state.get("average")
    if average is None:
        network.load_state_dict(state["model"])
    else:  # torch's AveragedModel: the network as its `module`, and its count
        network.load_state_dict({k.removeprefix("module."): v for k, v in average.items() if k != "n_averaged"})
    return network.eval()


def restore(state: dict, trainer: Engine, network: torch.nn.Module, optimizer: torch.optim.Optimizer,
            average: WeightAverage | None = None) -> None:
    """Put the weights and optimizer back now, and the epoch counter and the weight average when the trainer starts
    (ignite resets the one, the average restarts from the weights: register this after it)."""
    unwrap(network).load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])

    def go_on(engine: Engine) -> None:
        engine.state.epoch, engine.state.iteration = state["epoch"], state["iteration"]
        if average is not None and state.get("average") is not None:
            average.model.load_state_dict(state["average"])
        logger.info("resuming run %s after epoch %d of %d", state.get("run_id"), state["epoch"],
                    engine.state.max_epochs)

    trainer.add_event_handler(Events.STARTED, go_on)
