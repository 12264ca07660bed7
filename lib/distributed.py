"""Distributed training on PyTorch's DistributedDataParallel, started either by MONAI Label (one process per GPU of
one machine, `torch.multiprocessing.spawn`) or by `torchrun` (any number of processes and machines).

MONAI Label's BasicTrainTask only knows its own spawn path: it takes a process's rank for its GPU index, wraps
CPU networks with `device_ids=[None]` (which DDP refuses) and gives every rank a padded shard of the validation
set too. These helpers fill those gaps; everything else (the engines, the metrics' all-gather) is MONAI's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Sequence

import ignite.distributed as idist
import torch
import torch.distributed as dist
from monai.data import partition_dataset


@dataclass(frozen=True)
class Launch:
    """Where this process sits in a torchrun launch."""

    rank: int
    world_size: int
    local_rank: int


def torchrun_launch() -> Launch | None:
    """This process's place when torchrun started it (a single process too: it joins a group of one, so that
    `torchrun --nproc_per_node 1` runs the same NCCL or gloo path as many); None otherwise."""
    if "TORCHELASTIC_RUN_ID" not in os.environ and "MASTER_ADDR" not in os.environ:
        return None
    try:
        world = int(os.environ["WORLD_SIZE"])
        rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    except (KeyError, ValueError):
        return None
    return Launch(rank, world, local) if world >= 1 else None


def start(launch: Launch, device: torch.device) -> torch.device:
    """Join the process group (NCCL on GPUs, gloo on CPUs) and return this rank's device."""
    if device.type == "cuda":
        device = torch.device("cuda", launch.local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, init_method="env://", rank=launch.rank, world_size=launch.world_size,
                            timeout=timedelta(minutes=30))
    idist.sync()
    idist.set_local_rank(launch.local_rank)
    return device


def active() -> bool:
    """In a process group (of one or more ranks)."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if active() else 0


def from_rank0(obj: Any) -> Any:
    """Rank 0's value of obj on every rank (the run id, the data list): ranks must agree on them."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shard(data: Sequence[dict], train: bool) -> list[dict]:
    """This rank's part of data. Training: equal shards (padded by repeating studies, as DDP needs the same number
    of steps on every rank). Validation: each study once across ranks; when there are fewer studies than ranks,
    every rank validates all of them, which leaves the gathered mean unchanged."""
    data = list(data)
    if not active():
        return data
    world, me = dist.get_world_size(), dist.get_rank()
    if train:
        return partition_dataset(data, num_partitions=world, even_divisible=True)[me]
    if len(data) < world:
        return data
    return partition_dataset(data, num_partitions=world, even_divisible=False)[me]


def wrap(network: torch.nn.Module, device: torch.device, find_unused_parameters: bool = False) -> torch.nn.Module:
    """DistributedDataParallel around network when several processes train, else network itself."""
    if not active():
        return network
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(network, device_ids=ids, output_device=ids[0] if ids else None,
                                                     find_unused_parameters=find_unused_parameters)


def unwrap(network: torch.nn.Module) -> torch.nn.Module:
    return network.module if isinstance(network, torch.nn.parallel.DistributedDataParallel) else network
