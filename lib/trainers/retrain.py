"""Retraining as labels accumulate: after every N new final labels, one training run starts on the server.

MONAI Label runs training tasks one at a time (one worker thread) and refuses a second while one runs; the
trigger adds that nothing is queued behind a running or waiting run, so a burst of saved labels starts one run,
not one per label. Its count lives in a small JSON file in the model folder, so a restart neither forgets nor
re-counts what was saved before.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Callable

from ..data.atomic import save_json

logger = logging.getLogger(__name__)


class RetrainTrigger:
    """every: labels per run (0: off). count_final: the datastore's final labels now. busy: whether a training run
    is queued or running. start: start one (returns False when MONAI Label refused it)."""

    def __init__(self, every: int, state_path: Path, count_final: Callable[[], int], busy: Callable[[], bool],
                 start: Callable[[], bool]) -> None:
        self.every, self.state_path = every, Path(state_path)
        self.count_final, self.busy, self.start = count_final, busy, start
        self._lock = threading.Lock()
        if every > 0 and not self.state_path.exists():
            self._write(self.count_final())  # labels that were there before the trigger was turned on do not count

    def _read(self) -> int:
        try:
            return int(json.loads(self.state_path.read_text())["final_labels_at_last_run"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0

    def _write(self, count: int) -> None:
        save_json({"final_labels_at_last_run": count}, self.state_path)

    def label_saved(self) -> dict:
        """Called after each saved label; says what it did, for the save's answer."""
        if self.every <= 0:
            return {}
        with self._lock:
            count, last = self.count_final(), self._read()
            new = count - last
            if new < self.every:
                return {"retrain": f"{new} of {self.every} new final labels"}
            if self.busy():
                return {"retrain": f"{new} new final labels: a training run is already queued or running"}
            if not self.start():
                return {"retrain": "MONAI Label refused to start a training run"}
            self._write(count)
            logger.info("%d new final labels: training started", new)
            return {"retrain": f"started after {new} new final labels"}
