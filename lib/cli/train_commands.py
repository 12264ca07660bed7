"""`liver-tumor train`: the app's TrainTask outside the server, on a datastore, a Decathlon folder, or both.

One process trains on the CPU or one GPU; on a machine with several GPUs MONAI Label's own multi-GPU path runs
one process per GPU; under `torchrun` (one or many machines) every process runs this same command as one rank.
The published model goes to the app's model folder, where a running server picks it up.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from pathlib import Path

from .common import CliError, existing_dir, output_dir, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    from ..settings import APP_DIR

    p = sub.add_parser("train", help="train the liver_tumor model (one process, several GPUs, or under torchrun)")
    p.add_argument("--datastore", type=existing_dir, default=None, help="a datastore folder: its final labels train")
    p.add_argument("--decathlon", type=existing_dir, default=None,
                   help="a Task03_Liver folder: the seed's split (91 train, 26 validation); the 14 test cases are "
                        "segmented with the published model afterwards and their Dice reported")
    p.add_argument("--model-dir", type=output_dir, default=APP_DIR / "model",
                   help=f"where the model is published and runs are kept (default {APP_DIR / 'model'}, the "
                        "server's)")
    p.add_argument("--epochs", type=positive_int, default=None, help="epochs (default: max_epochs, 50)")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when there is one)")
    p.add_argument("--from-scratch", action="store_true", help="do not start from the model in use")
    p.add_argument("--resume", action="store_true", help="go on with the last run that was stopped or killed")
    p.add_argument("--seed", type=int, default=-1, help="random seed (default: none)")
    p.add_argument("--val-interval", type=positive_int, default=None, help="validate every N epochs (default 1)")
    p.add_argument("--single-process", action="store_true",
                   help="on a machine with several GPUs, use one (MONAI Label's multi-GPU path is the default)")
    p.add_argument("--conf", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                   help="an app option, as for the server (docs/options.md): spacing, crop_size, cache_mb, ...")
    p.set_defaults(run=run_train)


def request_from(args: argparse.Namespace) -> dict:
    request: dict = {"model": "liver_tumor", "pretrained": not args.from_scratch, "resume": args.resume,
                     "seed": args.seed, "multi_gpu": not args.single_process}
    if args.epochs:
        request["max_epochs"] = args.epochs
    if args.device:
        request["device"] = args.device
    if args.val_interval:
        request["val_interval"] = args.val_interval
    if args.decathlon:
        request["decathlon_dir"] = str(args.decathlon.resolve())
    return request


def _is_rank0() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def run_train(args: argparse.Namespace) -> None:
    if args.datastore is None and args.decathlon is None:
        raise CliError("give --datastore, --decathlon, or both")
    if args.device and args.device.split(":")[0] not in ("cuda", "cpu"):
        raise CliError(f"--device must be cuda or cpu, got {args.device!r}")
    from ..settings import Settings

    Settings.from_conf(dict(args.conf))  # a bad option stops here, named, before torch and MONAI load
    from ..configs.liver_tumor import LiverTumor
    from ..datastore import CheckedLocalDatastore
    from ..errors import AppError

    logging.basicConfig(level=logging.INFO if _is_rank0() else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    conf = dict(args.conf)
    config = LiverTumor()
    config.init("liver_tumor", str(Path(args.model_dir).resolve()), conf, None)
    datastore = CheckedLocalDatastore(str(args.datastore)) if args.datastore else None
    task = config.trainer()
    try:
        with contextlib.redirect_stdout(sys.stderr):  # MONAI's progress goes to stdout; stdout is for the report
            stats = task(request_from(args), datastore)
    except AppError as e:
        raise CliError(e.detail) from None
    if not _is_rank0():
        return
    stats = task.stats() or stats
    report = {k: stats.get(k) for k in ("best_metric", "baseline_metric", "published_epoch", "total_time")}
    keys = ("epoch", "loss", "learning_rate", "val_liver_dice", "val_tumour_dice", "seconds", "published")
    report["epochs"] = [{k: h.get(k) for k in keys} for h in stats.get("history", [])]
    report["published_model"] = config.current_model()
    report["curves"] = str(task.curves_path)
    if args.decathlon:
        report["test"] = test_on_decathlon(config, args.decathlon, conf)
    print(json.dumps(report, indent=1))


def test_on_decathlon(config, task_dir: Path, conf: dict) -> dict:
    """Dice per class of the published model on the split's test cases, with the app's own InferTask."""
    from ..configs.liver_tumor import LiverTumor
    from ..data.decathlon import cases
    from ..metrics.dice import mean_dice
    from ..metrics.evaluate import evaluate

    best = config.current_model()
    if best is None:
        raise CliError("training published no model: nothing to test")
    tester = LiverTumor()
    tester.init("liver_tumor", str(Path(config.model_dir) / "test"), {**conf, "pretrained_path": best}, None)
    test = [(c.id, c.image, c.label) for c in cases(task_dir, "seed", "test")]
    rows = evaluate(tester.infer(), test, {})
    return {"cases": len(rows), **mean_dice(rows),
            "per_case": [{k: r.get(k) for k in ("id", "liver_dice", "tumour_dice", "seconds")} for r in rows]}
