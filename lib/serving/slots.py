"""A bounded number of inferences at a time on each device, the rest waiting their turn, and whether any is
running or waiting, so that background work (scoring) can make way for annotators."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

T = TypeVar("T")


class InferenceSlots:
    def __init__(self, per_device: int) -> None:
        if per_device < 1:
            raise ValueError("per_device must be at least 1")
        self.per_device = per_device
        self._pools: dict[str, ThreadPoolExecutor] = {}
        self._wanted = 0  # inferences running or waiting for a slot
        self._changed = threading.Condition()

    def run(self, device: str, work: Callable[[], T]) -> T:
        """work() on one of the device's per_device threads, after the work submitted before it (queued, not
        refused). The same few threads run every inference because glibc gives each thread its own malloc arena:
        inferences in ever-new request threads each kept their own freed memory, and the server grew by a third."""
        with self._changed:
            self._wanted += 1
            if device not in self._pools:
                self._pools[device] = ThreadPoolExecutor(self.per_device, thread_name_prefix=f"infer-{device}")
            pool = self._pools[device]
        try:
            return pool.submit(work).result()
        finally:
            with self._changed:
                self._wanted -= 1
                self._changed.notify_all()

    def busy(self) -> int:
        """Inferences running or waiting."""
        return self._wanted

    def wait_idle(self, stop: threading.Event | None = None, poll_s: float = 0.5) -> bool:
        """Block while an inference runs or waits; False when `stop` was set meanwhile."""
        with self._changed:
            while self._wanted and not (stop is not None and stop.is_set()):
                self._changed.wait(poll_s)
        return not (stop is not None and stop.is_set())
