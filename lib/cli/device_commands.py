"""`liver-tumor device-check`: the prepared check for a GPU machine (lib/bench/device_check.py), its dry run, and
the wheels it takes there (scripts/device-check runs it)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from .common import CliError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("device-check", help="CUDA tests, GPU speed and a GPU training run, in one budget (a GPU "
                                            "machine); --dry-run: the same steps on the CPU, tiny")
    p.add_argument("--dry-run", action="store_true", help="every step on the CPU at tiny sizes (CI runs this)")
    p.add_argument("--out", type=Path, default=None,
                   help="where device-check.json, device-check.png and the trained model go (default: $OUT, else "
                        "runs/device-check)")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds for the steps (default 525: with the install it ends within 9 minutes; dry run 900)")
    p.add_argument("--only", default="", metavar="STEP,STEP",
                   help="run these steps only (environment, tests, bench_infer, bench_train, phantoms, training, "
                        "evaluation): on a 15-minute lease, the checks in one call and the training in another")
    p.add_argument("--start", type=Path, default=None, metavar="CHECKPOINT",
                   help="train from this checkpoint instead of the shipped one (a later session goes on from an "
                        "earlier one's last.pt, carried to the GPU machine)")
    p.add_argument("--conf", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                   help="a training option over the GPU stage's, as `liver-tumor train --conf` takes it (e.g. "
                        "crop_size 128); checked here, before the GPU's minutes start")
    p.add_argument("--prepare", type=Path, default=None, metavar="WHEELS",
                   help="instead: fetch the wheels the GPU machine lacks into this folder (.whl), for Python 3.12 "
                        "on manylinux x86-64, and check they travel with the working tree within 64 MiB")
    p.set_defaults(run=run_device_check)


def run_device_check(args: argparse.Namespace) -> None:
    if args.prepare is not None:
        from ..bench.device_wheels import prepare

        try:
            print(json.dumps(prepare(args.prepare), indent=1))
        except RuntimeError as e:
            raise CliError(str(e)) from None
        return
    from ..bench.device_check import Plan, run
    from ..settings import Settings

    if args.budget is not None and args.budget < 60:
        raise CliError(f"--budget must be at least 60 s, got {args.budget}")
    import torch

    if not args.dry_run and not torch.cuda.is_available():
        raise CliError("no CUDA GPU here: run it on a GPU machine, or give --dry-run")
    out = args.out or Path(os.environ.get("OUT") or "runs/device-check")
    if args.start is not None and not args.start.is_file():
        raise CliError(f"--start {args.start}: no such checkpoint file")
    stage_conf = tuple((k, v) for k, v in args.conf)
    unknown = sorted({k for k, _ in stage_conf} - {f.name for f in dataclasses.fields(Settings)})
    if unknown:
        raise CliError(f"--conf {', '.join(unknown)}: not an option of the app (docs/options.md)")
    try:
        Settings.from_conf(dict(stage_conf))
        plan = Plan.make(args.dry_run, args.budget, tuple(filter(None, args.only.split(","))),
                         str(args.start.resolve()) if args.start else "", stage_conf)
    except ValueError as e:
        raise CliError(str(e)) from None
    report = run(plan, out, progress=lambda m: print(m, file=sys.stderr, flush=True))
    print(json.dumps({"seconds": report["seconds"], **report["summary"]}, indent=1, default=str))
