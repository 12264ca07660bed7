"""`liver-tumor preannotate --studies DIR|URL --out DIR`: the model over a folder or a DICOMweb server.

One process per GPU: on a machine with several, the command starts itself again under torchrun with one process
each (`--processes` to choose); across machines, run it under torchrun on each (docs/preannotation.md). Each
process takes its shard of the study list.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from .common import CliError, output_dir, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("preannotate", help="segment many studies: labels, a report (CSV, JSON) and an overview PNG")
    p.add_argument("--studies", required=True,
                   help="a folder of NIfTI files and/or DICOM series, or a DICOMweb URL (http://HOST/dicom-web)")
    p.add_argument("--out", type=output_dir, required=True, help="folder for labels/, report.csv, report.json, "
                                                                  "overview.png; a second run skips what is done")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when there is one)")
    p.add_argument("--model", type=Path, default=None, help="a liver_tumor checkpoint to run")
    p.add_argument("--model-name", choices=("auto", "liver_tumor", "pyliverlesionseg"), default="auto",
                   help="which of the app's models (default auto: the one the server pre-annotates with, "
                        "docs/preannotation.md)")
    p.add_argument("--processes", type=positive_int, default=None,
                   help="processes on this machine, each with its shard (default: one per GPU, or 1)")
    p.add_argument("--conf", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                   help="an app option, as for the server (docs/options.md): spacing, roi_size, cpu_bf16, ...")
    p.set_defaults(run=run_preannotate)


def _relaunch(args: argparse.Namespace, processes: int) -> None:
    """This same command under torchrun with `processes` ranks on this machine."""
    argv = list(args.argv)  # under torchrun each rank runs these (a rank never starts itself again)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "-m", "lib.cli.main", *argv]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(max(1, os.cpu_count() // processes)))}
    done = subprocess.run(command, env=env)
    if done.returncode:
        raise CliError(f"pre-annotation processes failed (exit status {done.returncode}); see above")


def run_preannotate(args: argparse.Namespace) -> None:
    # what can be checked without loading torch is checked first
    if not args.studies.startswith(("http://", "https://")) and not Path(args.studies).is_dir():
        raise CliError(f"--studies: no such folder {args.studies}")
    if args.model is not None and not args.model.is_file():
        raise CliError(f"--model: no such file {args.model}")
    if args.model is not None and args.model_name == "pyliverlesionseg":
        raise CliError("--model is a liver_tumor checkpoint: leave out --model-name pyliverlesionseg")
    if not args.studies.startswith(("http://", "https://")) and not any(
            p.is_file() for p in Path(args.studies).rglob("*")):  # a folder of other files is found out later
        raise CliError(f"--studies: no NIfTI files or DICOM series in {args.studies}")
    import torch

    from ..distributed import torchrun_launch
    from ..preannotate.runner import PreannotateConfig, run

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.split(":")[0] not in ("cuda", "cpu"):
        raise CliError(f"--device must be cuda or cpu, got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CliError("--device cuda: no GPU here")
    launch = torchrun_launch()
    processes = args.processes or (torch.cuda.device_count() if device == "cuda" else 1)
    if launch is None and processes > 1:
        _relaunch(args, processes)
        return
    # warnings only (MONAI Label logs every stage of every study): the progress bar says how it goes
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr, force=True)  # MONAI Label's import sets the root logger to INFO
    # MONAI says at every DICOM read that NVIDIA's optional GPU decoder is absent
    logging.getLogger("monai.data.nvimgcodec_pydicom_plugin").setLevel(logging.ERROR)
    cfg = PreannotateConfig(args.studies, Path(args.out), device, args.model, dict(args.conf), args.model_name)
    with contextlib.redirect_stdout(sys.stderr):  # stdout is for the report
        report = run(cfg)
    if report is not None:  # rank 0 (under the relaunch too: its stdout is this command's)
        print(json.dumps(report["summary"], indent=1))
