"""`liver-tumor bench ...`: benchmarks, each printing JSON (and writing files in --out)."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from .common import CliError, existing_dir


def register(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="benchmarks (JSON on stdout)")
    kinds = bench.add_subparsers(dest="bench", required=True, parser_class=type(bench))
    p = kinds.add_parser("accuracy", help="Dice of /infer's labels against ground truth, per study")
    p.add_argument("--studies", type=existing_dir, required=True, help="a folder of images (a datastore)")
    p.add_argument("--truth", type=existing_dir, help="their ground-truth labels, same names (default STUDIES/truth)")
    p.add_argument("--pretrained", type=Path, help="checkpoint (default: the app's, the demo checkpoint)")
    p.add_argument("--out", type=Path, help="also write the JSON here")
    p.set_defaults(run=run_accuracy)


def run_accuracy(args: argparse.Namespace) -> None:
    import tempfile

    from ..bench.accuracy import evaluate, mean_dice
    from ..configs.liver_tumor import LiverTumor

    truth = args.truth or args.studies / "truth"
    cases = [(p.name.removesuffix(".nii.gz"), p, truth / p.name) for p in sorted(args.studies.glob("*.nii.gz"))
             if (truth / p.name).exists()]
    if not cases:
        raise CliError(f"no study in {args.studies} has a label of the same name in {truth}")
    logging.basicConfig(level=logging.WARNING)
    config = LiverTumor()
    conf = {"pretrained_path": str(args.pretrained)} if args.pretrained else {}
    with tempfile.TemporaryDirectory() as model_dir:
        config.init("liver_tumor", model_dir, conf, None)
        rows = evaluate(config.infer(), cases)
    result = {"mean": mean_dice(rows), "cases": rows}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
