"""What each rank did in a run, written by that rank when the run ends: its studies, its steps, and a digest of
its weights (identical on every rank when DistributedDataParallel keeps them in step). On several machines each
rank writes on its own disk; one file per rank in the run's `ranks/` folder."""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path
from typing import Callable, Sequence

import torch
from monai.engines.workflow import Engine, Events

from .. import distributed
from ..data.atomic import save_json


def parameters_digest(network: torch.nn.Module) -> str:
    """sha256 of the trainable parameters (batch-norm statistics are each rank's own until the next forward)."""
    h = hashlib.sha256()
    for name, p in distributed.unwrap(network).named_parameters():
        h.update(name.encode())
        h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def attach(trainer: Engine, folder: Path, network: torch.nn.Module, device: torch.device,
           train: Sequence[dict], val: Sequence[dict], published_writes: Callable[[], int]) -> None:
    def write(engine: Engine) -> None:
        me = distributed.rank()
        world = torch.distributed.get_world_size() if distributed.active() else 1
        report = {"rank": me, "world_size": world, "host": socket.gethostname(), "pid": os.getpid(),
                  "backend": torch.distributed.get_backend() if distributed.active() else None,
                  "device": str(device), "train_studies": [d["image"] for d in train],
                  "val_studies": [d["image"] for d in val], "epochs": engine.state.epoch,
                  "steps": engine.state.iteration, "parameters_sha256": parameters_digest(network),
                  "published_writes": published_writes()}
        save_json(report, folder / f"rank_{me}.json")

    if distributed.rank() == 0:  # an earlier run's reports (the other ranks write theirs only at the end)
        for old in folder.glob("rank_*.json"):
            old.unlink(missing_ok=True)
    trainer.add_event_handler(Events.COMPLETED, write)
