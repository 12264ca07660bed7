"""After each validation: record the epoch's numbers, draw the curves, and publish the model when it beats the one in
use.

MONAI Label's own publisher copies the run's best checkpoint over the published one with shutil.copy (a reader
can see half a file) and publishes a run's first epoch even when it is worse than the model already serving.
This one writes atomically, and when fine-tuning it first measures the serving model on the same validation
data, so that only a better model replaces it. Better means a higher key metric (mean Dice by default; lesions found
or tumour global Dice on request: `publish_metric`), ties broken by mean Dice, since lesion sensitivity moves in steps
of one lesion. With several ranks, every rank runs the validations (their Dice is gathered) and rank 0 alone writes.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
from monai.engines.workflow import Engine, Events
from monailabel.tasks.train.basic_train import BasicTrainTask
from monailabel.tasks.train.handler import prepare_stats

from ..data.atomic import save_json
from ..distributed import unwrap
from ..model.checkpoint import save_state_dict
from ..viz.curves import plot_history
from .steps import EpochSteps

logger = logging.getLogger(__name__)


TIE_BREAK = BasicTrainTask.VAL_METRIC_MEAN_DICE  # the name MONAI Label's trainer gives the mean Dice
Score = tuple[float, float]  # (key metric, mean Dice)


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else "-"


def _finite(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        v = v.tolist()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, list):
        return [_finite(x) for x in v]
    return v


def _learning_rate(trainer: Engine) -> float | None:
    """The rate of the epoch just trained; None for a workflow without an optimizer."""
    optimizer = getattr(trainer, "optimizer", None)
    return optimizer.param_groups[0]["lr"] if optimizer is not None else None


class PublishBest:
    def __init__(self, stats_path: str, publish_path: str | None, trainer: Engine, evaluator: Engine | None,
                 network: torch.nn.Module, start_ts: float, key_metric: str, card: dict, measure_baseline: bool,
                 writer: bool = True, resumed: dict | None = None, curves_path: Path | None = None):
        """writer: this rank writes stats, curves and the model. resumed: the history and best score of the run
        this one goes on with."""
        self.stats_path, self.publish_path, self.writer = stats_path, publish_path, writer
        self.curves_path = curves_path
        self.trainer, self.evaluator, self.network = trainer, evaluator, network
        self.start_ts, self.key_metric, self.card = start_ts, key_metric, card
        self.measure_baseline = measure_baseline and not resumed
        resumed = resumed or {}
        best = resumed.get("best", -math.inf)  # a float in the resume points of runs from before ties were broken
        self.best: Score = tuple(best) if isinstance(best, (list, tuple)) else (best, -math.inf)
        self.baseline: float | None = resumed.get("baseline")
        self.published_epoch: int | None = resumed.get("published_epoch")
        self.history: list[dict] = list(resumed.get("history", []))
        # a resumed run's clock (start_ts) is its own process's: its time goes on from the last validation's
        self.elapsed_before = float((self.history[-1].get("elapsed_seconds") or 0) if self.history else 0)
        self._losses: list[float] = []
        self.steps = EpochSteps()
        self.writes = 0  # models this rank wrote

    def state(self) -> dict:
        """What a resumed run needs to go on where this one stopped."""
        return {"best": list(self.best), "baseline": self.baseline, "published_epoch": self.published_epoch,
                "history": self.history}

    def attach(self) -> None:
        """On every rank: the validations are collective when several ranks train."""
        self.trainer.add_event_handler(Events.STARTED, self._baseline)
        self.steps.attach(self.trainer)
        self.trainer.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)
        self.trainer.add_event_handler(Events.ITERATION_COMPLETED, self._iteration)
        target = self.evaluator if self.evaluator is not None else self.trainer
        target.add_event_handler(Events.EPOCH_COMPLETED, self._after_validation)

    def _baseline(self, engine: Engine) -> None:
        """Fine-tuning starts from the serving model: its score on this validation data is the bar to beat."""
        if self.measure_baseline and self.evaluator is not None:
            self.evaluator.run()
            score = self._score(self.evaluator)
            self.baseline = score[0] if score else None
            self.best = score or (-math.inf, -math.inf)
            self.history.clear()

    def _epoch_started(self, engine: Engine) -> None:
        self._losses = []

    def _iteration(self, engine: Engine) -> None:
        out = engine.state.output
        out = out[0] if isinstance(out, list) else out
        if isinstance(out, dict) and "loss" in out:
            self._losses.append(float(out["loss"]))

    def _score(self, engine: Engine) -> Score | None:
        key, tie = (_finite(engine.state.metrics.get(m)) for m in (self.key_metric, TIE_BREAK))
        if not isinstance(key, float):
            return None
        return key, tie if isinstance(tie, float) else -math.inf

    def _after_validation(self, engine: Engine) -> None:
        epoch = self.trainer.state.epoch
        if epoch == 0:  # the baseline run of the evaluator
            return
        metrics = {k: _finite(v) for k, v in (self.evaluator or self.trainer).state.metrics.items()}
        score = self._score(self.evaluator or self.trainer)
        published = False
        if self.publish_path and score is not None and score > self.best:
            self.best = score
            self.published_epoch = epoch
            if self.writer:
                meta = {**self.card, "epoch": epoch, "metrics": metrics, "published_ts": int(time.time())}
                save_state_dict(unwrap(self.network), Path(self.publish_path), meta=meta)
                self.writes += 1
            published = True
        self.history.append({
            "epoch": epoch,
            "loss": sum(self._losses) / len(self._losses) if self._losses else None,
            "learning_rate": _learning_rate(self.trainer),
            **metrics,
            "seconds": round(time.perf_counter() - self.steps.start, 1),
            "elapsed_seconds": round(self.elapsed_before + time.time() - self.start_ts, 1),  # since the run started
            # this rank's training steps (data loading included, validation not), for samples per second
            "train_seconds": round(self.steps.seconds, 2),
            "samples": self.steps.samples,
            "published": published,
        })
        h = self.history[-1]
        logger.info("epoch %d/%d: loss %s, Dice liver %s tumour %s, %.0f s%s", epoch, self.trainer.state.max_epochs,
                    _fmt(h["loss"]), _fmt(h.get("val_liver_dice")), _fmt(h.get("val_tumour_dice")), h["seconds"],
                    ", published" if published else "")
        if self.writer:
            self.write_stats()
            if self.curves_path:
                plot_history(self.history, self.curves_path, title=str(self.card.get("model", "training")),
                             baseline=self.baseline, key_metric=self.key_metric)

    def write_stats(self) -> dict:
        stats = prepare_stats(self.start_ts, self.trainer, self.evaluator)
        stats.update({"history": self.history, "baseline_metric": self.baseline, "best_metric": _finite(self.best[0]),
                      "published_epoch": self.published_epoch})
        stats = json.loads(json.dumps(stats, default=_finite).replace("NaN", "null"))
        save_json(stats, Path(self.stats_path))
        return stats
