"""`liver-tumor decathlon ...`: Medical Segmentation Decathlon Task03_Liver."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .common import CliError, existing_dir, non_negative_int, output_dir, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("decathlon", help="Medical Segmentation Decathlon Task03_Liver")
    dsub = d.add_subparsers(dest="action", required=True, parser_class=type(d))

    p = dsub.add_parser("download", help="download and unpack Task03_Liver (about 28 GB) with MONAI's downloader")
    p.add_argument("--out", type=output_dir, required=True, help="folder to put Task03_Liver/ in")
    p.add_argument("--url", default=None, help="another address of the archive (a mirror)")
    p.add_argument("--md5", default=None, help="md5 of the archive at --url")
    p.set_defaults(run=run_download)

    p = dsub.add_parser("import", help="copy Task03 cases into a MONAI Label datastore, labels as final")
    p.add_argument("task_dir", type=existing_dir, help="the Task03_Liver folder (with dataset.json)")
    p.add_argument("--into", type=output_dir, required=True, help="the datastore folder")
    p.add_argument("--split", default=None, help="a named split (seed: 91/26/14) to take one subset of")
    p.add_argument("--subset", default=None, choices=["train", "validation", "test"])
    p.add_argument("--unlabelled", action="store_true", help="also import imagesTs as studies to label")
    p.set_defaults(run=run_import)

    p = dsub.add_parser("split", help="print a named split of the 131 labelled cases as JSON")
    p.add_argument("--name", default="seed")
    p.add_argument("--task-dir", type=existing_dir, default=None,
                   help="also print the image and label paths of each case in this folder")
    p.set_defaults(run=run_split)

    p = dsub.add_parser("standin", help="a Task03_Liver folder made of phantoms, with the real layout")
    p.add_argument("--out", type=output_dir, required=True)
    p.add_argument("--count", type=positive_int, default=6)
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--preset", default="small", choices=["small", "medium", "full"])
    p.set_defaults(run=run_standin)


def _guard(fn, *args, **kwargs):
    from ..data.decathlon import DecathlonError

    try:
        return fn(*args, **kwargs)
    except DecathlonError as e:
        raise CliError(str(e)) from e


def run_download(args: argparse.Namespace) -> None:
    from ..data.decathlon import download

    print(_guard(download, args.out, args.url, args.md5))


def run_import(args: argparse.Namespace) -> None:
    from ..data.decathlon import import_into

    if args.subset and not args.split:
        raise CliError("--subset needs --split")
    ids = _guard(import_into, args.task_dir, args.into, args.split, args.subset, args.unlabelled,
                 progress=sys.stderr.isatty())
    print(f"{len(ids)} studies imported into {args.into}")


def run_split(args: argparse.Namespace) -> None:
    from ..data.decathlon import datalist, load_split

    split = _guard(load_split, args.name)
    if args.task_dir:
        split = {s: _guard(datalist, args.task_dir, args.name, s) for s in ("train", "validation", "test")}
    print(json.dumps(split, indent=1))


def run_standin(args: argparse.Namespace) -> None:
    from ..data.decathlon import make_standin

    print(make_standin(Path(args.out), args.count, args.seed, args.preset))
