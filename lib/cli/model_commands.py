"""Subcommands about models: the demo checkpoint, the locator, pyliverlesionseg's converted weights, int8 copies."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from .common import CliError, output_dir, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    from ..settings import DEMO_CHECKPOINT, LOCATOR_CHECKPOINT, PYLIVERLESIONSEG_WEIGHTS

    p = sub.add_parser("demo-model", help="train the demo checkpoint on synthetic phantoms (CPU: about 1.5 h)")
    p.add_argument("--work", type=output_dir, required=True, help="folder for the phantoms and the training run")
    p.add_argument("--out", type=Path, default=DEMO_CHECKPOINT, help=f"checkpoint to write (default {DEMO_CHECKPOINT})")
    p.add_argument("--epochs", type=positive_int, default=None, help="training epochs (default: the recipe's)")
    p.add_argument("--jobs", type=positive_int, default=2, help="phantoms made in parallel")
    p.add_argument("--spacing", type=float, default=None, help="working spacing in mm (default: the recipe's 1.0)")
    p.add_argument("--data", type=Path, default=None, help="reuse the phantoms of an earlier --work folder")
    p.add_argument("--start", type=Path, default=None,
                   help="go on from a checkpoint this recipe made (e.g. the shipped one): the stages after it run")
    p.set_defaults(run=run_demo_model)

    p = sub.add_parser("locator-model", help="train the 4 mm liver locator of the inference cascade (CPU: ~10 min)")
    p.add_argument("--work", type=output_dir, required=True, help="folder for the phantoms")
    p.add_argument("--out", type=Path, default=LOCATOR_CHECKPOINT,
                   help=f"checkpoint to write (default {LOCATOR_CHECKPOINT})")
    p.add_argument("--jobs", type=positive_int, default=2, help="phantoms made in parallel")
    p.set_defaults(run=run_locator_model)

    p = sub.add_parser("pyliverlesionseg-model",
                       help="fetch pyliverlesionseg 0.3 from PyPI, check it, convert its networks (about 1 min)")
    p.add_argument("--out", type=Path, default=PYLIVERLESIONSEG_WEIGHTS,
                   help=f"weights to write, with a card beside them (default {PYLIVERLESIONSEG_WEIGHTS})")
    p.add_argument("--cache", type=Path, default=None, help="where the wheel is kept (default ~/.cache/liver-tumor)")
    p.add_argument("--find-links", default=None, help="a folder holding the wheel, instead of the package index")
    p.add_argument("--evaluate", action="store_true",
                   help="also measure it on LiTS case 117 and the shared real CT, and put the numbers on the card")
    p.add_argument("--if-missing", action="store_true", help="do nothing when --out exists (make serve)")
    p.set_defaults(run=run_pyliverlesionseg_model)

    p = sub.add_parser("int8-model", help="copy a checkpoint with its convolutions as int8: half a float16 file's size")
    p.add_argument("checkpoint", type=Path, help="a checkpoint of the app's UNet")
    p.add_argument("--out", type=Path, required=True, help="the int8 checkpoint to write; its card (.json) beside it")
    p.set_defaults(run=run_int8_model)


def run_demo_model(args: argparse.Namespace) -> None:
    from ..recipes.demo import make_demo_model

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.start is not None and not args.start.is_file():
        raise CliError(f"--start: no such file {args.start}")
    card = make_demo_model(args.work, args.out, args.epochs, args.jobs, args.spacing, args.data, args.start)
    print(json.dumps({k: card[k] for k in ("trained_on", "heldout", "train_seconds")}, indent=1, default=str))


def run_locator_model(args: argparse.Namespace) -> None:
    from ..recipes.locator import make_locator_model

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    card = make_locator_model(args.work, args.out, args.jobs)
    print(json.dumps({k: card[k] for k in ("heldout_small_dice", "heldout_full", "train_seconds")}, indent=1))


def run_pyliverlesionseg_model(args: argparse.Namespace) -> None:
    if args.if_missing and args.out.exists():
        return
    from ..data.wheels import DownloadError
    from ..recipes.pyliverlesionseg import make_pyliverlesionseg_model

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        card = make_pyliverlesionseg_model(args.out, args.cache, args.find_links, args.evaluate)
    except DownloadError as e:
        raise CliError(str(e)) from None
    print(json.dumps({k: card[k] for k in ("source", "port_check", "seconds") + (("evaluation",) if args.evaluate
                                                                                   else ())}, indent=1))


def run_int8_model(args: argparse.Namespace) -> None:
    from ..model.checkpoint import CheckpointError, load_network, read_card, save_state_dict

    try:
        network = load_network(args.checkpoint)
    except CheckpointError as e:
        raise CliError(str(e)) from None
    card = {**read_card(args.checkpoint), "int8_of": args.checkpoint.name}
    save_state_dict(network, args.out, meta=card, int8=True)
    print(json.dumps({"out": str(args.out), "bytes": args.out.stat().st_size,
                      "bytes_before": args.checkpoint.stat().st_size}, indent=1))
