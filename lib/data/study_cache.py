"""A training set that runs the deterministic pre-processing once per study, keeps it on disk between runs and in
memory up to a budget in MB, and runs only the random transforms at each step.

Why not MONAI's own: CacheDataset bounds its cache by a count or a fraction of items, not by memory, and whole
Decathlon volumes at 1 mm are 100-400 MB each (MONAI Label users run out of memory caching them); PersistentDataset
keeps everything on disk only, keyed by the data dict (file paths), so a label saved again under the same path
would be served stale. Here an entry's key also holds the files' size and modification time and the
pre-processing's signature, and entries that no study uses any more are pruned.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from monai.data import Dataset

from .atomic import write_atomic

logger = logging.getLogger(__name__)


def entry_key(item: dict, signature: str) -> str:
    """The cache key of one data dict: its files' paths, sizes and modification times, and the pre-processing."""
    parts: dict[str, Any] = {"signature": signature}
    for k, v in sorted(item.items()):
        if isinstance(v, str) and os.path.isfile(v):
            st = os.stat(v)
            parts[k] = [os.path.realpath(v), st.st_size, st.st_mtime_ns]
        else:
            parts[k] = repr(v)
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def nbytes(obj: Any) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.element_size() * obj.numel()
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, dict):
        return sum(nbytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(nbytes(v) for v in obj)
    return 0


class StudyCache(Dataset):
    """data: MONAI data dicts. deterministic: run once per study (its result is cached). per_step: the random part,
    run at every access on a copy of the cached study, or, with copy_study False, on the study itself (for a
    per_step that changes only what it makes, its crops: a 1 mm study's deep copy took 0.1 s a step). cache_dir:
    None for no disk cache. memory_mb: the in-memory budget (0: none)."""

    def __init__(self, data: Sequence[dict], deterministic: Callable, per_step: Callable | None, signature: str,
                 cache_dir: Path | None, memory_mb: float, workers: int = 1, copy_study: bool = True) -> None:
        super().__init__(list(data), transform=None)
        self.deterministic, self.per_step, self.signature = deterministic, per_step, signature
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.budget = int(memory_mb * 2**20)
        self.memory: dict[int, Any] = {}
        self.memory_bytes = 0
        self.computed = 0  # studies pre-processed by this instance (not read back from disk)
        self.from_disk = 0
        self.workers = max(1, workers)
        self.copy_study = copy_study
        self._lock = threading.Lock()
        if self.cache_dir:
            self.cache_dir.mkdir(parents=True, exist_ok=True)

    # ---- the deterministic part, once per study
    def _path(self, index: int) -> Path | None:
        return self.cache_dir / f"{entry_key(self.data[index], self.signature)}.pt" if self.cache_dir else None

    def prepared(self, index: int) -> Any:
        with self._lock:
            if index in self.memory:
                return self.memory[index]
        path = self._path(index)
        item = None
        if path is not None and path.exists():
            try:
                item = torch.load(path, weights_only=False)
                with self._lock:
                    self.from_disk += 1
            except Exception as e:  # a cache file from a killed run or another torch: recompute it
                logger.warning("cache entry %s unreadable (%s): computing it again", path.name, e)
                item = None
        if item is None:
            item = self.deterministic(copy.deepcopy(self.data[index]))
            with self._lock:
                self.computed += 1
            if path is not None:
                write_atomic(path, lambda p: torch.save(item, p))
        size = nbytes(item)
        with self._lock:
            if index not in self.memory and self.memory_bytes + size <= self.budget:
                self.memory[index] = item
                self.memory_bytes += size
        return item

    def warm(self) -> "StudyCache":
        """Pre-process every study now (in `workers` threads), logging progress; afterwards only random
        transforms run per step."""
        started, done = time.time(), 0
        with ThreadPoolExecutor(self.workers) as pool:
            for _ in pool.map(self.prepared, range(len(self.data))):
                done += 1
                if done == len(self.data) or time.time() - started > 5 and done % max(1, len(self.data) // 10) == 0:
                    logger.info("cache: %d/%d studies ready (%d computed, %d from disk), %.0f MB in memory, %.0f s",
                                done, len(self.data), self.computed, self.from_disk, self.memory_bytes / 2**20,
                                time.time() - started)
        return self

    def _transform(self, index: int) -> Any:
        item = self.prepared(index)
        if self.per_step is None:
            return copy.copy(item)  # a new dict: nothing added downstream reaches the cache
        # random transforms must not change the cached study
        return self.per_step(copy.deepcopy(item) if self.copy_study else copy.copy(item))


def prune(cache_dir: Path, data: Sequence[dict], signature: str) -> int:
    """Remove the entries that no study in `data` uses (older labels, other settings); returns how many."""
    if not cache_dir.is_dir():
        return 0
    keep = {f"{entry_key(d, signature)}.pt" for d in data}
    removed = 0
    for p in cache_dir.glob("*.pt"):
        if p.name not in keep and not p.name.startswith("."):  # dot-files: another rank's write in progress
            p.unlink(missing_ok=True)
            removed += 1
    return removed
