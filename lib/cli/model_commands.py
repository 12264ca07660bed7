"""Subcommands about models: the demo checkpoint and the locator."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from .common import output_dir, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    from ..settings import DEMO_CHECKPOINT, LOCATOR_CHECKPOINT

    p = sub.add_parser("demo-model", help="train the demo checkpoint on synthetic phantoms (CPU: about 1.5 h)")
    p.add_argument("--work", type=output_dir, required=True, help="folder for the phantoms and the training run")
    p.add_argument("--out", type=Path, default=DEMO_CHECKPOINT, help=f"checkpoint to write (default {DEMO_CHECKPOINT})")
    p.add_argument("--epochs", type=positive_int, default=None, help="training epochs (default: the recipe's)")
    p.add_argument("--jobs", type=positive_int, default=2, help="phantoms made in parallel")
    p.add_argument("--spacing", type=float, default=None, help="working spacing in mm (default: the recipe's 1.0)")
    p.add_argument("--data", type=Path, default=None, help="reuse the phantoms of an earlier --work folder")
    p.set_defaults(run=run_demo_model)

    p = sub.add_parser("locator-model", help="train the 4 mm liver locator of the inference cascade (CPU: ~10 min)")
    p.add_argument("--work", type=output_dir, required=True, help="folder for the phantoms")
    p.add_argument("--out", type=Path, default=LOCATOR_CHECKPOINT,
                   help=f"checkpoint to write (default {LOCATOR_CHECKPOINT})")
    p.add_argument("--jobs", type=positive_int, default=2, help="phantoms made in parallel")
    p.set_defaults(run=run_locator_model)


def run_demo_model(args: argparse.Namespace) -> None:
    from ..recipes.demo import make_demo_model

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    card = make_demo_model(args.work, args.out, args.epochs, args.jobs, args.spacing, args.data)
    print(json.dumps({k: card[k] for k in ("trained_on", "heldout", "train_seconds")}, indent=1, default=str))


def run_locator_model(args: argparse.Namespace) -> None:
    from ..recipes.locator import make_locator_model

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    card = make_locator_model(args.work, args.out, args.jobs)
    print(json.dumps({k: card[k] for k in ("heldout_small_dice", "heldout_full", "train_seconds")}, indent=1))
