"""Shared helpers: the repo's paths, the real-data folder (or a skip saying why), and running the CLI."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

# torch's CPU threads (GNU OpenMP) spin while they wait for work unless told to sleep. Two pytest workers and the
# servers and CLI runs they start share this machine's 2 cores, so the spinning takes cores from the others. Three
# test files run as `make test` runs them (the device-check dry run, the server e2e and the cascade, -n 2): 319 and
# 250 s spinning, 250 and 206 s waiting passively (two pairs of runs, either order first), 192 s with this line.
# Set before anything loads torch; every process a test starts inherits it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from lib.bench.server import ServerProcess, free_port  # noqa: E402, F401 (tests import free_port from here)
from lib.data.fixtures import shared_data_dir  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# `liver-tumor train` options for runs that check behaviour in seconds: 4 mm, 32^3 crops, from scratch
TINY = ["--conf", "spacing", "4", "--conf", "crop_size", "32", "--conf", "crops_per_volume", "2",
        "--conf", "roi_size", "64", "--conf", "pretrained_path", "none"]


def decathlon_standin(out_dir: Path, count: int, distinct: int, seed: int) -> Path:
    """A Task03_Liver stand-in of `count` training cases (small phantoms) made of `distinct` of them, the others
    hard links to these: what the tests that use it check is the layout and the seed's split by case id, and each
    phantom costs seconds to make."""
    import json

    from lib.data.decathlon import make_standin

    task = make_standin(out_dir, count=distinct, seed=seed, test_count=0)
    meta = json.loads((task / "dataset.json").read_text())
    for i in range(distinct, count):
        for folder in ("imagesTr", "labelsTr"):
            os.link(task / folder / f"liver_{i % distinct}.nii.gz", task / folder / f"liver_{i}.nii.gz")
        meta["training"].append({"image": f"./imagesTr/liver_{i}.nii.gz", "label": f"./labelsTr/liver_{i}.nii.gz"})
    meta["numTraining"] = count
    (task / "dataset.json").write_text(json.dumps(meta, indent=1))
    return task


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 600
            ) -> subprocess.CompletedProcess:
    """Run `liver-tumor ARGS` as a user would, in a fresh process."""
    return subprocess.run([sys.executable, "-m", "lib.cli.main", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or ROOT, env={**os.environ, **(env or {})}, timeout=timeout)


def cli(*args: str) -> subprocess.CompletedProcess:
    """`liver-tumor ARGS` run in this process, answered as run_cli answers. For refusals and short commands (file
    conversions, a resumed run with nothing left to do): a fresh process would add only its imports (MONAI's alone
    take 7 s here)."""
    import io
    import logging

    from lib.cli.main import main

    out, err, root = io.StringIO(), io.StringIO(), logging.getLogger()
    handlers, level = list(root.handlers), root.level
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:  # argparse's refusals
            code = e.code
        finally:  # a command's logging.basicConfig would otherwise write to `err` from then on
            root.handlers[:], root.level = handlers, level
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def cli_error(*args: str) -> str:
    """The one-line error of `liver-tumor ARGS`, run in this process."""
    return one_line_error(cli(*args))


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The CLI's error: exit status 2 and one error line, the last on stderr (progress may come before it)."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = [ln for ln in proc.stderr.replace("\r", "\n").splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower()]
    assert len(errors) == 1 and errors[0] == lines[-1], proc.stderr
    return errors[0]


@pytest.fixture(scope="session", autouse=True)
def temporary_files_with_the_tests(tmp_path_factory) -> Iterator[None]:
    """This process's temporary files go under pytest's own folder (which keeps its last three runs), not /tmp: an
    InferTask writes each label to a temporary file its caller owns, and the tests that call one directly left
    about 44 of them in /tmp a run. In this process only: the servers and browsers the tests start keep /tmp."""
    previous = tempfile.tempdir
    tempfile.tempdir = str(tmp_path_factory.mktemp("tempfiles"))
    yield
    tempfile.tempdir = previous


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if path is None:
        pytest.skip("../shared/data (real CT studies) is absent beside this clone")
    return path


@pytest.fixture(scope="session")
def hdf5(tmp_path_factory) -> dict[str, Path]:
    """pyliverlesionseg's Keras weights from its PyPI wheel (a skip where the package index cannot be reached)."""
    import zipfile

    from lib.data.wheels import DownloadError, cached_wheel
    from lib.model.pyliverlesionseg import STAGES
    from lib.recipes.pyliverlesionseg import PUBLISHED_SHA256, REQUIREMENT, WHEEL, WHEEL_PYTHON

    try:
        wheel = cached_wheel(REQUIREMENT, WHEEL, python_version=WHEEL_PYTHON, published_sha256=PUBLISHED_SHA256)
    except DownloadError as e:
        pytest.skip(f"the package index is unreachable here: {e}")
    folder = tmp_path_factory.mktemp("hdf5")
    with zipfile.ZipFile(wheel) as zf:
        return {stage.name: Path(zf.extract(stage.hdf5, folder)) for stage in STAGES}


@pytest.fixture(scope="session")
def weights(hdf5, tmp_path_factory) -> Path:
    """The app's PyTorch port of them, made as `liver-tumor pyliverlesionseg-model` makes it."""
    from lib.recipes.pyliverlesionseg import make_pyliverlesionseg_model

    out = tmp_path_factory.mktemp("weights") / "pyliverlesionseg.pt"
    card = make_pyliverlesionseg_model(out)
    assert card["port_check"]["lesion"]["largest_convolution_difference"] < 1e-4
    assert "Apache License" in out.with_name("pyliverlesionseg.LICENSE").read_text()
    return out


def liver_dice_in_world(label_path: Path, truth_path: Path) -> float:
    """Liver Dice of a label against ground truth that may be stored in another voxel order (a DICOM series' grid
    against the NIfTI it was made from): both in the closest RAS order, where they must share the grid."""
    import nibabel as nib
    import numpy as np

    from lib.metrics.dice import dice

    a, b = (nib.as_closest_canonical(nib.load(str(p))) for p in (label_path, truth_path))
    assert a.shape == b.shape and np.allclose(a.affine, b.affine, atol=1e-3), (a.affine, b.affine)
    return dice(np.asanyarray(a.dataobj), np.asanyarray(b.dataobj), 1)


@contextlib.contextmanager
def served(root: Path, conf: dict[str, str], studies: Path | str | None = None, env: dict | None = None
           ) -> Iterator[tuple]:
    """`monailabel start_server` on a copy of sample-data (or `studies`: a folder, copied, or a DICOMweb URL) and of
    the app, on a loopback port, as a user starts it; yields (MONAI Label's client, the studies folder or URL, the
    app folder)."""
    from monailabel.client import MONAILabelClient

    # the model trained on patients only where a test asks for it: its weights are converted on first use
    conf = {"pyliverlesionseg_path": "none", **conf}
    studies_dir, app_dir = root / "studies", copy_app(root / "app")
    if isinstance(studies, str):
        studies_dir = studies
    else:
        shutil.copytree(studies or ROOT / "sample-data", studies_dir)
    server = ServerProcess(app_dir, studies_dir, conf, root / "server.log", env)
    try:
        server.start()
    except RuntimeError as e:
        pytest.fail(str(e))
    (root / "client").mkdir()
    try:
        yield MONAILabelClient(server.url, tmpdir=str(root / "client")), studies_dir, app_dir
    finally:
        server.stop()


def copy_app(app_dir: Path) -> Path:
    """The app without its trained models, as a fresh clone has it."""
    shutil.copytree(ROOT / "apps" / "liver_tumor", app_dir,
                    ignore=shutil.ignore_patterns("model", "__pycache__", "pyliverlesionseg.*"))
    return app_dir


def train_random_transforms(model_dir: Path, request: dict) -> list:
    """The training task's random transforms for a train request, from the app's config at 4 mm with no model."""
    # imported here: MONAI Label's app loader in an earlier test of the same process may have imported lib again,
    # and a class from before would not be the trainer's
    from types import SimpleNamespace

    from lib.configs.liver_tumor import LiverTumor

    config = LiverTumor()
    config.init("liver_tumor", str(model_dir), {"pretrained_path": "none", "spacing": "4"}, None)
    task = config.trainer()
    return task.random_transforms(SimpleNamespace(request=task.options(request)))
