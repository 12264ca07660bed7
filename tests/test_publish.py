"""What a training run publishes: the model in use is the bar, the key metric decides, mean Dice breaks ties."""

from __future__ import annotations

import math
import time

import pytest
import torch
from ignite.engine import Events
from monai.engines.workflow import Workflow

from lib.model.checkpoint import read_card
from lib.trainers.publish import PublishBest

# (lesions of 10 mm or more found, mean Dice): the model in use, then four validations
VALIDATIONS = [(0.5, 0.60), (0.5, 0.65), (0.75, 0.55), (0.75, 0.50), (0.5, 0.90)]


def _run(tmp_path, key_metric: str, resumed: dict | None = None, start_ts: float = 0.0
         ) -> tuple[PublishBest, list[bool]]:
    scores = iter(VALIDATIONS if resumed is None else VALIDATIONS[1:])
    evaluator = Workflow("cpu", 1, [0], iteration_update=lambda engine, batch: None)

    @evaluator.on(Events.EPOCH_COMPLETED)
    def measure(engine):  # stands in for the metrics, attached before the publisher as the trainer attaches them
        sensitivity, dice = next(scores)
        engine.state.metrics.update(val_lesion_sensitivity=sensitivity, val_mean_dice=dice)

    trainer = Workflow("cpu", 4, [0], iteration_update=lambda engine, batch: {"loss": 1.0})
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda _: evaluator.run())
    publisher = PublishBest(str(tmp_path / "stats.json"), str(tmp_path / "model.pt"), trainer, evaluator,
                            torch.nn.Linear(2, 3), start_ts, key_metric, {"model": "test"}, measure_baseline=True,
                            resumed=resumed)
    publisher.attach()
    trainer.run()
    return publisher, [h["published"] for h in publisher.history]


@pytest.mark.parametrize("key_metric, published", [
    ("val_mean_dice", [True, False, False, True]),
    ("val_lesion_sensitivity", [True, True, False, False]),  # epoch 1: the same lesions found, a better Dice
])
def test_the_key_metric_publishes_and_mean_dice_breaks_ties(tmp_path, key_metric, published):
    publisher, flags = _run(tmp_path, key_metric)
    assert flags == published
    last = max(i + 1 for i, p in enumerate(published) if p)
    assert publisher.published_epoch == last == read_card(tmp_path / "model.pt")["epoch"]
    baseline = VALIDATIONS[0][0 if key_metric == "val_lesion_sensitivity" else 1]
    assert publisher.write_stats()["baseline_metric"] == baseline


def test_a_run_resumed_from_a_resume_point_with_a_bare_best_score_goes_on(tmp_path):
    """Resume points written before ties were broken hold the best key metric alone."""
    publisher, flags = _run(tmp_path, "val_lesion_sensitivity", {"best": 0.5, "baseline": 0.5, "history": []})
    assert flags == [True, True, False, False]  # any Dice breaks a tie with a score that has none
    assert publisher.state()["best"] == [0.75, 0.55] and not math.isinf(publisher.best[1])


def test_a_resumed_run_counts_its_time_on_from_where_it_stopped(tmp_path):
    """The curves' title gives the run's minutes: a resumed run's clock starts again, its elapsed time must not."""
    before = {"epoch": 1, "loss": 1.0, "val_mean_dice": 0.65, "published": True, "elapsed_seconds": 1000.0}
    publisher, _ = _run(tmp_path, "val_mean_dice", {"best": [0.65, 0.65], "baseline": 0.6, "history": [before]},
                        start_ts=time.time())
    elapsed = [h["elapsed_seconds"] for h in publisher.history]
    assert elapsed[0] == 1000.0 and all(1000.0 <= e < 1060.0 for e in elapsed[1:]) and elapsed == sorted(elapsed)
