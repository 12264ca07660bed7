"""`liver-tumor bench ...`: benchmarks, each printing JSON (and writing files and plots in --out)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import sys
from pathlib import Path

from ..data.labelled import labelled_studies
from .common import CliError, existing_dir, non_negative_int, output_dir, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="benchmarks (JSON on stdout)")
    kinds = bench.add_subparsers(dest="bench", required=True, parser_class=type(bench))
    p = kinds.add_parser("accuracy", help="Dice, liver mL added and missed, and lesions of /infer's labels against "
                         "ground truth, per study")
    p.add_argument("--studies", type=existing_dir, required=True, help="a folder of images (a datastore)")
    p.add_argument("--truth", type=existing_dir, help="their ground-truth labels, same names (default STUDIES/truth)")
    p.add_argument("--pretrained", type=Path, help="checkpoint (default: the app's, the demo checkpoint)")
    p.add_argument("--out", type=Path, help="also write the JSON here")
    p.add_argument("--picture", type=Path, help="a PNG of the first studies' labels, true tumours dashed")
    p.add_argument("--lesion-chart", type=Path,
                   help="a PNG of every true lesion, size against contrast, found or missed")
    p.add_argument("--liver-shift-hu", type=float, default=0.0,
                   help="measure the studies with their true liver (label 1) moved by this many HU, tumours kept: "
                        "a stress test (lib/bench/liver_shift.py)")
    p.add_argument("--conf", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                   help="an app option (docs/options.md), as for the server")
    p.set_defaults(run=run_accuracy)

    p = kinds.add_parser("probe", help="small-lesion detection in minutes: a synthetic lesion in each of N crops "
                                       "deep in the liver, checkpoints side by side on the same crops")
    p.add_argument("--studies", type=existing_dir, required=True,
                   help="a folder of images with liver labels (training studies serve: the lesions are new)")
    p.add_argument("--truth", type=existing_dir,
                   help="their labels, same names (default STUDIES/truth; a datastore's are in labels/final)")
    p.add_argument("--pretrained", type=Path, nargs="+", required=True, help="checkpoints, named by their files")
    p.add_argument("--crops", type=positive_int, help="one lesion each (default 40)")
    p.add_argument("--size-mm", type=float, nargs=2, metavar=("MIN", "MAX"),
                   help="the lesions' drawn diameters (default 12 16)")
    p.add_argument("--spacing", type=float, help="working spacing in mm (default: the checkpoints' cards, else 1)")
    p.add_argument("--seed", type=int, help="the crops and lesions (default 5)")
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when there is a GPU")
    p.add_argument("--out", type=output_dir, default=Path("runs/bench-probe"), help="probe.json, probe.png go here")
    p.set_defaults(run=run_probe)

    p = kinds.add_parser("steps", help="a training step's data, transform by transform, on labelled studies (one "
                                       "thread, as a loader process): where a GPU's steps wait")
    p.add_argument("--studies", type=existing_dir, required=True, help="a folder of images (a datastore)")
    p.add_argument("--truth", type=existing_dir, help="their labels, same names (default STUDIES/truth)")
    p.add_argument("--steps", type=positive_int, default=10, help="steps a study (default 10)")
    p.add_argument("--conf", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                   help="a train option, as a train request gives it (e.g. synth_prob 0.5); repeatable")
    p.add_argument("--out", type=output_dir, default=Path("runs/bench-steps"), help="steps.json, steps.png go here")
    p.set_defaults(run=run_steps)

    p = kinds.add_parser("al", help="label efficiency of the active-learning strategies (oracle on phantoms)")
    p.add_argument("--work", type=output_dir, default=Path("runs/bench-al"), help="phantoms and cache")
    p.add_argument("--out", type=output_dir, default=Path("runs/bench-al"), help="al.json and al.png go here")
    p.add_argument("--full", action="store_true", help="clinical sizes and the seed's network (for a GPU)")
    p.add_argument("--seeds", type=positive_int, help="number of seeds (default 3)")
    p.add_argument("--pool", type=positive_int, help="studies that can be labelled")
    p.add_argument("--test", type=positive_int, help="held-out studies")
    p.add_argument("--rounds", type=positive_int, help="rounds of picking after the initial set")
    p.add_argument("--per-round", type=positive_int, help="studies labelled per round")
    p.add_argument("--initial", type=positive_int, help="studies labelled at the start")
    p.add_argument("--steps", type=positive_int, help="training steps per model (fixed budget)")
    p.add_argument("--strategies", help="comma-separated subset of the strategies")
    p.add_argument("--from-scratch", action="store_true", help="train each round from scratch (default: fine-tune)")
    p.set_defaults(run=run_al)

    from ..bench.infer_cases import CASES

    p = kinds.add_parser("infer", help="the seed's inference pipeline vs /infer: latency, memory, GFLOP/s, Dice")
    p.add_argument("--work", type=output_dir, default=Path("runs/bench-infer"), help="cases and labels")
    p.add_argument("--out", type=output_dir, default=Path("runs/bench-infer"), help="infer.json, infer.png go here")
    p.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {', '.join(CASES)}")
    p.add_argument("--runs", type=positive_int, default=3, help="runs per case and pipeline (the median is reported)")
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when there is a GPU")
    p.add_argument("--pretrained", type=Path, help="checkpoint for both pipelines (default: the demo checkpoint)")
    p.add_argument("--only", choices=("baseline", "app"), help="run one pipeline only")
    p.add_argument("--levers", action="store_true",
                   help="also the app with each speed lever taken away, on the first case")
    p.add_argument("--variant", action="append", default=[], metavar="app:KEY=VALUE,...",
                   help="also the app with these /infer request options (conf.KEY: an app option), on the first "
                        "case; e.g. app:intensity_tta_hu=-20 (repeatable)")
    p.add_argument("--no-peaks", action="store_true",
                   help="leave out the matrix-multiply peak and the one-window forward rates (about 15 s on a CPU)")
    p.set_defaults(run=run_infer)

    p = kinds.add_parser("train", help="MONAI Label's BasicTrainTask (sample-app set-up) vs this app's trainer")
    p.add_argument("--work", type=output_dir, default=Path("runs/bench-train"), help="phantoms and runs")
    p.add_argument("--out", type=output_dir, default=Path("runs/bench-train"), help="train.json, train.png go here")
    p.add_argument("--minutes", type=float, default=None, help="wall-clock budget per trainer (default 10)")
    p.add_argument("--train", type=positive_int, default=None, help="training phantoms (default 16)")
    p.add_argument("--val", type=positive_int, default=None, help="validation phantoms (default 4)")
    p.add_argument("--preset", choices=("small", "medium", "full"), default=None, help="phantom size (small)")
    p.add_argument("--spacing", type=float, default=None, help="working spacing in mm (default 2.0)")
    p.add_argument("--crop", type=positive_int, default=None, help="crop edge in voxels (default 64)")
    p.add_argument("--target", type=float, default=None, help="liver Dice to reach (default 0.90)")
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when there is a GPU")
    p.add_argument("--only", choices=("baseline", "app"), help="run one trainer only")
    p.add_argument("--app-conf", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                   help="an app option for the app's trainer only, to measure a variant (learning_rate 0.001)")
    p.set_defaults(run=run_train)

    p = kinds.add_parser("models", help="the app's models side by side: Dice, lesions found by size, latency")
    p.add_argument("--work", type=output_dir, default=Path("runs/bench-models"), help="cases")
    p.add_argument("--out", type=output_dir, default=Path("runs/bench-models"), help="models.json, models.png go here")
    p.add_argument("--models", default="liver_tumor,pyliverlesionseg", help="comma-separated models of the app")
    p.add_argument("--full", type=non_negative_int, default=6, help="held-out full-size phantoms (default 6)")
    p.add_argument("--medium", type=non_negative_int, default=6, help="held-out medium phantoms (default 6)")
    p.add_argument("--no-real", action="store_true", help="leave out LiTS case 117 and the shared real CT")
    p.add_argument("--no-speed", action="store_true", help="leave out the latency on the 512 x 512 x 200 phantom")
    p.add_argument("--conf", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                   help="an app option (docs/options.md), as for the server")
    p.set_defaults(run=run_models)

    p = kinds.add_parser("bootstrap", help="fine-tuning on a few final labels, with and without the pseudo-labels "
                                           "of the model trained on patients")
    p.add_argument("--work", type=output_dir, default=Path("runs/bench-bootstrap"), help="phantoms and runs")
    p.add_argument("--out", type=output_dir, default=Path("runs/bench-bootstrap"), help="bootstrap.json goes here")
    p.add_argument("--final", type=positive_int, default=4, help="studies with final labels (one validates)")
    p.add_argument("--unlabelled", type=positive_int, default=10, help="studies without (pseudo-labelled)")
    p.add_argument("--steps", type=positive_int, default=128, help="optimisation steps of each run")
    p.set_defaults(run=run_bootstrap)

    p = kinds.add_parser("load", help="concurrent annotators against one server: throughput, latency, nothing lost")
    p.add_argument("--out", type=output_dir, default=Path("runs/bench-load"),
                   help="the server's copy of sample-data, its log, load.json and load.png go here")
    p.add_argument("--clients", type=positive_int, default=8, help="concurrent clients (default 8)")
    p.add_argument("--requests", type=positive_int, default=240, help="requests in all (default 240)")
    p.add_argument("--window", type=float, default=3.0, help="the server's serve_window_s (default 3)")
    p.add_argument("--conf", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                   help="an app option for the server (docs/options.md), e.g. spacing 3 for quicker inference")
    p.set_defaults(run=run_load)

    p = kinds.add_parser("startup", help="a freshly started server: first next-sample per strategy, /infer beside "
                                         "the background scorer against an idle server")
    p.add_argument("--out", type=output_dir, default=Path("runs/bench-startup"),
                   help="the servers' copies of sample-data, their logs, startup.json and startup.png go here")
    p.add_argument("--studies", nargs="+", default=["phantom_2026_004", "phantom_2026_005", "phantom_2026_006"],
                   help="unlabelled sample studies to infer on both servers")
    p.add_argument("--rounds", type=positive_int, default=2, help="times each study is inferred (default 2)")
    p.add_argument("--conf", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                   help="an app option for both servers (docs/options.md)")
    p.set_defaults(run=run_startup)


def run_load(args: argparse.Namespace) -> None:
    from ..bench.load import LoadConfig, plot, run
    from ..bench.server import ServerProcess, fresh_copies
    from ..data.atomic import save_json
    from ..settings import APP_DIR, DEMO_CHECKPOINT, Settings

    if args.window <= 0:
        raise CliError(f"--window must be positive, got {args.window}")
    studies, app_dir = fresh_copies(args.out, APP_DIR.parents[1] / "sample-data", APP_DIR)
    cfg = LoadConfig(clients=args.clients, requests=args.requests, window_s=args.window)
    conf = {"pretrained_path": str(DEMO_CHECKPOINT), **dict(args.conf), "serve_window_s": str(args.window)}
    Settings.from_conf(conf)  # a bad option stops here, named
    with ServerProcess(app_dir, studies, conf, args.out / "server.log") as server:
        result = run(server.url, server.process.pid, studies, cfg,
                     progress=lambda m: print(m, file=sys.stderr, flush=True))
    save_json(result, args.out / "load.json")
    plot(result, args.out / "load.png")
    print(json.dumps({k: v for k, v in result.items() if k != "timeline"}, indent=1))


def run_startup(args: argparse.Namespace) -> None:
    from ..bench.startup import plot, run
    from ..data.atomic import save_json
    from ..settings import APP_DIR, Settings

    sample = APP_DIR.parents[1] / "sample-data"
    missing = [s for s in args.studies if not (sample / f"{s}.nii.gz").exists()]
    if missing:
        raise CliError(f"--studies: not in sample-data: {', '.join(missing)}")
    conf = {"pyliverlesionseg_path": "none", **dict(args.conf)}
    Settings.from_conf(conf)  # a bad option stops here, named
    result = run(args.out, sample, APP_DIR, conf, args.studies, args.rounds,
                 progress=lambda m: print(m, file=sys.stderr, flush=True))
    save_json(result, args.out / "startup.json")
    plot(result, args.out / "startup.png")
    print(json.dumps(result, indent=1))


PICTURED = 6  # studies in bench accuracy's picture


def run_accuracy(args: argparse.Namespace) -> None:
    import tempfile

    from ..settings import Settings

    # what is refused is refused before torch and MONAI load (about 10 s here)
    cases = labelled_studies(args.studies, args.truth)
    conf = {**dict(args.conf), **({"pretrained_path": str(args.pretrained)} if args.pretrained else {})}
    Settings.from_conf(conf)  # a bad option stops here, named

    from ..configs.liver_tumor import LiverTumor
    from ..data.phantoms.study import known_tumours
    from ..metrics.evaluate import evaluate, summarise
    from ..viz.montage import montage

    logging.basicConfig(level=logging.WARNING)
    config = LiverTumor()
    with tempfile.TemporaryDirectory() as model_dir, tempfile.TemporaryDirectory() as shifted:
        if args.liver_shift_hu:
            from ..bench.liver_shift import shift_liver

            cases = [(cid, shift_liver(image, label, args.liver_shift_hu, Path(shifted)), label)
                     for cid, image, label in cases]
        config.init("liver_tumor", model_dir, conf, None)
        labels = Path(model_dir) / "labels"
        rows = evaluate(config.infer(), cases, known=known_tumours, keep=labels if args.picture else None)
        if args.picture:
            montage([(c[0], c[1], labels / f"{c[0]}.nii.gz", c[2]) for c in cases[:PICTURED]], args.picture,
                    "labels of the app's model (liver green, tumour red) against the true tumours (dashed)")
    result = {"mean": summarise(rows), "cases": rows, **({"liver_shift_hu": args.liver_shift_hu}
                                                          if args.liver_shift_hu else {})}
    if args.lesion_chart:
        from ..viz.lesions import lesion_chart

        lesion_chart(rows, args.lesion_chart, f"{args.studies.name}, {len(rows)} "
                     f"stud{'y' if len(rows) == 1 else 'ies'}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


def run_probe(args: argparse.Namespace) -> None:
    import torch

    from ..bench.lesion_probe import ProbeConfig, run
    from ..data.atomic import save_json
    from ..model.checkpoint import CheckpointError, load_network, read_card
    from ..viz.probe import probe_chart

    lo, hi = args.size_mm or ProbeConfig.size_mm
    if not 0 < lo <= hi:
        raise CliError(f"--size-mm {lo:g} {hi:g}: give the smallest and largest diameter, both over 0")
    if args.spacing is not None and args.spacing <= 0:
        raise CliError(f"--spacing {args.spacing:g}: a working spacing in mm, over 0")
    cards = {str(p): read_card(p).get("spacing_mm") for p in args.pretrained}
    spacings = {tuple(s) for s in cards.values() if s}
    if args.spacing is None and len(spacings) > 1:
        raise CliError(f"the checkpoints were trained at different spacings ({cards}): give --spacing")
    if args.spacing is None and any(len(set(s)) > 1 for s in spacings):
        raise CliError(f"the probe works at one spacing on every axis; the checkpoints' cards say {cards}: "
                       "give --spacing")
    spacing = args.spacing or (next(iter(spacings))[0] if spacings else 1.0)
    names = [p.stem for p in args.pretrained]
    names = names if len(set(names)) == len(names) else [str(p) for p in args.pretrained]
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        networks = {n: load_network(p, device=device) for n, p in zip(names, args.pretrained)}
    except CheckpointError as e:
        raise CliError(str(e)) from e
    given = {"crops": args.crops, "seed": args.seed}
    cfg = ProbeConfig(size_mm=(lo, hi), spacing=spacing, **{k: v for k, v in given.items() if v is not None})
    result = run(labelled_studies(args.studies, args.truth), networks, cfg, device,
                 progress=lambda m: print(m, file=sys.stderr, flush=True))
    if not result["crops"]:
        raise CliError(f"no lesion could be painted: the livers in {args.studies} are too small for "
                       f"{cfg.crop_voxels}-voxel crops")
    save_json(result, args.out / "probe.json")
    probe_chart(result, args.out / "probe.png")
    print(json.dumps(result, indent=1))


def run_steps(args: argparse.Namespace) -> None:
    from ..bench.steps import measure, plot
    from ..data.atomic import save_json

    result = measure(labelled_studies(args.studies, args.truth), dict(args.conf), args.steps,
                     progress=lambda m: print(m, file=sys.stderr, flush=True))
    save_json(result, args.out / "steps.json")
    plot(result, args.out / "steps.png")
    print(json.dumps(result, indent=1))


def run_al(args: argparse.Namespace) -> None:
    from ..bench.active_learning import STRATEGIES, ALConfig, plot, run, save

    cfg = ALConfig.full() if args.full else ALConfig()
    changes = {k: getattr(args, k) for k in ("pool", "test", "rounds", "per_round", "initial", "steps")
               if getattr(args, k) is not None}
    if args.from_scratch:
        changes["warm_start"] = False
    if args.seeds:
        changes["seeds"] = tuple(range(args.seeds))
    if args.strategies:
        chosen = tuple(s.strip() for s in args.strategies.split(",") if s.strip())
        unknown = [s for s in chosen if s not in STRATEGIES]
        if unknown:
            raise CliError(f"unknown strategies {', '.join(unknown)}: choose from {', '.join(STRATEGIES)}")
        changes["strategies"] = chosen
    cfg = dataclasses.replace(cfg, **changes)
    if cfg.initial + cfg.rounds * cfg.per_round > cfg.pool:
        raise CliError(f"the pool ({cfg.pool}) is smaller than initial + rounds x per-round "
                       f"({cfg.initial + cfg.rounds * cfg.per_round})")
    result = run(args.work, cfg, progress=lambda line: print(line, file=sys.stderr, flush=True))
    save(result, args.out / "al.json")
    plot(result, args.out / "al.png")
    print(json.dumps({k: result[k] for k in ("table", "paired", "full_pool", "cost_s", "seconds")}, indent=1))


def run_infer(args: argparse.Namespace) -> None:
    from ..bench.infer_cases import CASES

    cases = tuple(c.strip() for c in args.cases.split(",") if c.strip())
    unknown = [c for c in cases if c not in CASES]
    if unknown or not cases:
        raise CliError(f"unknown cases {', '.join(unknown) or '(none given)'}: choose from {', '.join(CASES)}")
    if args.pretrained and not args.pretrained.is_file():
        raise CliError(f"--pretrained: no such file {args.pretrained}")
    import torch

    from ..bench.inference import LEVERS, InferBenchConfig, parse_variant, plot, run, table
    from ..settings import Settings, read

    if args.device == "cuda" and not torch.cuda.is_available():
        raise CliError("--device cuda: no CUDA GPU here")
    for variant in args.variant:
        try:
            if not variant.startswith("app:"):
                raise ValueError("a variant of the app starts with 'app:'")
            request, conf = parse_variant(variant)
            for key, value in request.items():
                read(key, value)
            Settings.from_conf(conf)
        except KeyError as e:
            raise CliError(f"--variant {variant}: {e.args[0]} is no /infer option (docs/options.md)") from None
        except ValueError as e:
            raise CliError(f"--variant {variant}: {e}") from None
    changes = {"cases": cases, "runs": args.runs,
               "checkpoint": str(args.pretrained) if args.pretrained else None}
    if args.device:
        changes["device"] = args.device
    if args.only:
        changes["pipelines"] = (args.only,)
    if args.levers or args.variant:
        changes["levers"] = (LEVERS if args.levers else ()) + tuple(args.variant)
    if args.no_peaks:
        changes["peaks"] = False
    logging.basicConfig(level=logging.WARNING)
    result = run(args.work, InferBenchConfig(**changes), progress=lambda m: print(m, file=sys.stderr, flush=True))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "infer.json").write_text(json.dumps(result, indent=1))
    plot(result, args.out / "infer.png")
    print(table(result), file=sys.stderr)
    print(json.dumps(result, indent=1))


def run_train(args: argparse.Namespace) -> None:
    from ..settings import Settings

    if args.minutes is not None and args.minutes <= 0:
        raise CliError(f"--minutes must be positive, got {args.minutes}")
    if args.target is not None and not 0 < args.target <= 1:
        raise CliError(f"--target must be in (0, 1], got {args.target}")
    Settings.from_conf(dict(args.app_conf))  # a bad option stops here, named
    import torch

    from ..bench.training import TrainBenchConfig, plot, run, table, with_changes
    from ..data.atomic import save_json

    if args.device == "cuda" and not torch.cuda.is_available():
        raise CliError("--device cuda: no CUDA GPU here")
    cfg = with_changes(TrainBenchConfig(), minutes=args.minutes, train=args.train, val=args.val, preset=args.preset,
                       spacing=args.spacing, crop=args.crop, target=args.target, device=args.device,
                       trainers=(args.only,) if args.only else None,
                       app_conf=tuple(tuple(kv) for kv in args.app_conf) or None)
    logging.basicConfig(level=logging.WARNING)
    result = run(args.work, cfg, progress=lambda m: print(m, file=sys.stderr, flush=True))
    args.out.mkdir(parents=True, exist_ok=True)
    save_json(result, args.out / "train.json")
    plot(result, args.out / "train.png")
    # the JSON first, the table last: its per-epoch lists grow with the epochs that fit in the minutes, and the
    # table is what the end of a log (device-check keeps 3000 characters of each step) should show
    print(json.dumps(result, indent=1), flush=True)
    print(table(result), file=sys.stderr)


def run_models(args: argparse.Namespace) -> None:
    from ..bench.models import MODELS, ModelsBenchConfig, plot, run, table
    from ..data.atomic import save_json
    from ..settings import Settings

    models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        raise CliError(f"unknown models {', '.join(unknown) or '(none given)'}: choose from {', '.join(MODELS)}")
    if args.full + args.medium == 0:
        raise CliError("--full and --medium are both 0: no phantom to measure on")
    Settings.from_conf(dict(args.conf))  # a bad option stops here, named
    logging.basicConfig(level=logging.WARNING)
    cfg = ModelsBenchConfig(models=models, full=args.full, medium=args.medium, real=not args.no_real,
                            speed_case=None if args.no_speed else "full_512x512x200")
    result = run(args.work, cfg, dict(args.conf), progress=lambda m: print(m, file=sys.stderr, flush=True))
    save_json(result, args.out / "models.json")
    plot(result, args.out / "models.png")
    print(table(result), file=sys.stderr)
    print(json.dumps(result, indent=1))


def run_bootstrap(args: argparse.Namespace) -> None:
    from ..bench.bootstrap import BootstrapConfig, run, table
    from ..data.atomic import save_json

    if args.final < 2:
        raise CliError("--final must be at least 2: one study validates")
    logging.basicConfig(level=logging.WARNING)
    cfg = BootstrapConfig(final=args.final, unlabelled=args.unlabelled, steps=args.steps)
    with contextlib.redirect_stdout(sys.stderr):  # MONAI's training progress goes to stdout; stdout is for the JSON
        result = run(args.work, cfg, progress=lambda m: print(m, file=sys.stderr, flush=True))
    save_json(result, args.out / "bootstrap.json")
    print(table(result), file=sys.stderr)
    print(json.dumps(result, indent=1))
