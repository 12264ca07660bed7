"""Scoring in the background of the server: one thread, one study at a time, making way for annotators.

MONAI Label scores in a subprocess per method, started at start-up, after every training run and after every
next-sample, and the uncertainty strategies scored what was still missing inside the request: the first
uncertainty request on a fresh server waited minutes while the start-up subprocess scored the same studies beside
it. Here one thread of the server scores, in this order: the image features of every study (cheap, the fallback
of the strategies), then the model's MC-dropout uncertainty of the unlabelled studies, then of the labelled ones
(their embeddings are what diversity counts as covered); and per-class label change when a label was saved.
Scores live in the datastore with the model's version, so a restart goes on where it stopped, and a model
published by a training run (a new version) is noticed and scored again. While an inference runs or waits, the
scorer pauses before the network's next layer.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.scoring import ScoringMethod

from ..serving.slots import InferenceSlots
from .mc_dropout import UncertaintyScorer

logger = logging.getLogger(__name__)


class Stopped(Exception):
    """The server is shutting down."""


class BackgroundScorer:
    def __init__(self, scorer: UncertaintyScorer, datastore: Callable[[], Datastore], slots: InferenceSlots,
                 label_change: ScoringMethod | None = None, poll_s: float = 15.0) -> None:
        """poll_s: how often it looks for new studies and a new model version when nothing wakes it."""
        self.scorer, self.datastore, self.slots, self.label_change = scorer, datastore, slots, label_change
        self.poll_s = poll_s
        self._stop, self._wake, self._label_change_due = threading.Event(), threading.Event(), threading.Event()
        self._thread: threading.Thread | None = None
        self._failed: set[tuple[str, str | None]] = set()  # (study, model version): not tried again

    def wake(self, label_change: bool = False) -> None:
        """Look for work now (started on first call); label_change: a label was saved."""
        if label_change:
            self._label_change_due.set()
        self._wake.set()
        if self._thread is None and not self._stop.is_set():
            self._thread = threading.Thread(target=self._run, name="background-scoring", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop before the next layer or study, and wait for it."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self._pass()
            except Stopped:
                break
            except Exception:  # a datastore or model problem: logged, tried again at the next wake
                logger.exception("background scoring")
            self._wake.wait(self.poll_s)
        self.scorer.activity = "stopped"

    def _make_way(self) -> None:
        """Wait while inferences run or wait; Stopped once the server shuts down."""
        if self.slots.busy():
            self.scorer.activity = "paused while an inference runs"
        if not self.slots.wait_idle(self._stop) or self._stop.is_set():
            raise Stopped
        self.scorer.activity = "scoring"

    def _pass(self) -> None:
        ds = self.datastore()
        if self._label_change_due.is_set() and self.label_change is not None:
            self._label_change_due.clear()
            self._make_way()
            self.label_change({}, ds)
        studies = ds.get_unlabeled_images() + ds.get_labeled_images()
        for image_id in studies:
            if self.scorer.cached_features(image_id, ds) is None:
                self._score(image_id, lambda i=image_id: self.scorer.image_features(i, ds))
        for image_id in studies:
            if self.scorer.version() is not None and self.scorer.cached(image_id, ds) is None:
                self._score(image_id, lambda i=image_id: self.scorer.score(i, ds, before_layer=self._make_way))
        failed = sum(version == self.scorer.version() for _, version in self._failed)
        self.scorer.activity = ("idle: no model to score with" if self.scorer.version() is None else
                                f"idle: {failed} studies could not be scored (see the log)" if failed else
                                "idle: every study scored")

    def _score(self, image_id: str, work: Callable[[], object]) -> None:
        key = (image_id, self.scorer.version())
        if key in self._failed:
            return
        self._make_way()
        try:
            work()
        except Stopped:
            raise
        except Exception:  # an unreadable study: logged once per model version, the others go on
            logger.exception(f"background scoring of {image_id}")
            self._failed.add(key)
