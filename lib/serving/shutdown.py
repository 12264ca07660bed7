"""A clean shutdown: SIGTERM or SIGINT ends the server's child processes and starts no new one.

MONAI Label runs training, scoring and batch inference as child processes (monailabel.utils.async_tasks) and does
nothing about them when the server stops: they run on without a parent, and a task queued behind a running one
starts during shutdown. uvicorn's own handlers (installed before the app starts) stop the server once in-flight
requests end; the handler here runs first: it refuses new tasks, drops queued ones, runs the app's hooks (the
background scorer stops) and ends every child: SIGTERM, then SIGKILL after GRACE_S. A training run killed so keeps
its resume point (lib.trainers.resume writes it whole, at the end of each epoch).
"""

from __future__ import annotations

import atexit
import logging
import signal
import threading
from datetime import datetime
from typing import Callable

import psutil
from monailabel.utils.async_tasks import utils as async_tasks

logger = logging.getLogger(__name__)
GRACE_S = 5.0


def end_children(grace_s: float = GRACE_S) -> list[int]:
    """Terminate every descendant of this process, kill those still there after grace_s; their pids."""
    children = psutil.Process().children(recursive=True)
    for child in children:
        try:
            child.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(children, timeout=grace_s)
    for child in alive:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    return [c.pid for c in children]


class Shutdown:
    def __init__(self) -> None:
        self.started = threading.Event()
        self._hooks: list[Callable[[], None]] = []

    def on_start(self, hook: Callable[[], None]) -> None:
        """Run `hook` (quickly: it runs in the signal handler) when shutdown starts."""
        self._hooks.append(hook)

    def install(self) -> None:
        """Refuse MONAI Label tasks once shutdown started; chain before SIGTERM's and SIGINT's handlers (from the
        main thread only, where Python delivers signals: a test client runs the app elsewhere)."""
        original = getattr(async_tasks._task_func, "unguarded", async_tasks._task_func)

        def guarded(task: dict, method: str, callback: Callable | None = None) -> None:
            if self.started.is_set():
                logger.info(f"shutting down: {method} task {task['id']} not started")
                task.update(status="STOPPED", end_ts=datetime.today().strftime("%Y-%m-%d %H:%M:%S"))
                return None
            return original(task, method, callback)

        guarded.unguarded = original  # type: ignore[attr-defined]
        async_tasks._task_func = guarded  # looked up by name when a task is submitted
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous = signal.getsignal(sig)
                signal.signal(sig, lambda s, f, previous=previous: self._handle(s, f, previous))
        atexit.register(self.begin, wait=True)

    def _handle(self, sig: int, frame, previous) -> None:
        logger.info(f"{signal.Signals(sig).name}: stopping background work and child processes")
        self.begin()
        if callable(previous):
            previous(sig, frame)
        elif previous == signal.SIG_DFL:
            signal.signal(sig, signal.SIG_DFL)
            signal.raise_signal(sig)

    def begin(self, wait: bool = False) -> None:
        """Start the shutdown (once): no new task, queued ones dropped, hooks run, children ended (in a thread,
        or here when wait)."""
        first = not self.started.is_set()
        self.started.set()
        if first:
            for executor in list(async_tasks.background_executors.values()):
                executor.shutdown(wait=False, cancel_futures=True)
            for hook in self._hooks:
                hook()
        if wait:
            end_children()
        elif first:
            threading.Thread(target=end_children, name="end-children", daemon=True).start()
