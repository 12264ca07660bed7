"""Subcommands that make data: phantoms, the sample datastore, real fixtures, and montages of studies."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .common import CliError, existing_dir, non_negative_int, output_dir, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("phantoms", help="synthetic abdominal CT studies with liver and tumour ground truth")
    p.add_argument("--out", type=output_dir, required=True, help="folder to write the studies into")
    p.add_argument("--count", type=positive_int, required=True, help="how many studies")
    p.add_argument("--seed", type=non_negative_int, required=True, help="random seed (same seed, same studies)")
    p.add_argument("--preset", default="small", choices=["small", "medium", "full"],
                   help="small: under 1 M voxels; medium: 160^2 in plane; full: 512^2 in plane, 60-400 slices")
    p.add_argument("--start", type=non_negative_int, default=0, help="index of the first study (default 0)")
    p.add_argument("--jobs", type=positive_int, default=1, help="studies made in parallel (default 1)")
    p.add_argument("--tissues", action="store_true", help="also write the tissue map of each study (tissues/)")
    p.set_defaults(run=run_phantoms)

    p = sub.add_parser("sample-data", help="(re)make the committed sample datastore from its fixed seeds")
    p.add_argument("--out", type=output_dir, default=Path("sample-data"), help="datastore folder (default sample-data)")
    p.add_argument("--jobs", type=positive_int, default=1)
    p.set_defaults(run=run_sample_data)

    p = sub.add_parser("fixtures", help="real CT fixtures: LiTS case 117 from PyPI and ../shared/data, as NIfTI")
    p.add_argument("--out", type=output_dir, required=True, help="folder to write the fixtures into")
    p.add_argument("--cache", type=output_dir, default=None,
                   help="where the downloaded wheel is kept (default ~/.cache/liver-tumor)")
    p.add_argument("--find-links", default=None, help="take the wheel from this folder or URL instead of the index")
    p.set_defaults(run=run_fixtures)

    p = sub.add_parser("montage", help="PNG with an axial and a coronal slice of each study, labels outlined")
    p.add_argument("studies", type=existing_dir, help="a phantom, fixture or datastore folder")
    p.add_argument("--out", type=Path, required=True, help="PNG file to write")
    p.add_argument("--limit", type=positive_int, default=8, help="at most this many studies (default 8)")
    p.set_defaults(run=run_montage)


def run_phantoms(args: argparse.Namespace) -> None:
    from ..data.phantoms.batch import make_phantoms

    params = make_phantoms(args.out, args.count, args.seed, args.preset, args.start, args.jobs, args.tissues,
                           progress=sys.stderr.isatty())
    for p in params:
        print(json.dumps({k: p[k] for k in ("id", "phase", "shape", "spacing_mm", "orientation", "tumour_count",
                                            "label_liver_ml", "label_tumour_ml")}))


def run_sample_data(args: argparse.Namespace) -> None:
    from ..data.sample_datastore import make_sample_datastore

    ids = make_sample_datastore(args.out, args.jobs, progress=sys.stderr.isatty())
    print(f"{len(ids)} studies in {args.out}")


def run_fixtures(args: argparse.Namespace) -> None:
    from ..data.fixtures import FixtureError, make_fixtures

    try:
        ids, skipped = make_fixtures(args.out, args.cache, args.find_links)
    except FixtureError as e:
        raise CliError(str(e)) from e
    for i in ids:
        print(f"{args.out / (i + '.nii.gz')}")
    if skipped:
        print(f"skipped the shared real studies: {skipped}", file=sys.stderr)


def _labelled_studies(folder: Path) -> list[tuple[str, Path, Path | None]]:
    rows = []
    for image in sorted(folder.glob("*.nii.gz")) + sorted(folder.glob("*.nii")):
        sid = image.name.removesuffix(".gz").removesuffix(".nii")
        label = next((p for p in (folder / "truth" / image.name, folder / "labels" / "final" / image.name)
                      if p.exists()), None)
        rows.append((sid, image, label))
    return rows


def run_montage(args: argparse.Namespace) -> None:
    from ..viz.montage import montage

    rows = _labelled_studies(args.studies)[: args.limit]
    if not rows:
        raise CliError(f"no NIfTI studies in {args.studies}")
    if args.out.suffix.lower() != ".png":
        raise CliError(f"--out must name a .png file, got {args.out}")
    out = montage(rows, args.out)
    print(os.fspath(out))
