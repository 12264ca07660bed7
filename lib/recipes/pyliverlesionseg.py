"""The pyliverlesionseg weights: fetched from PyPI, checked, converted, verified, recorded on a card.

    liver-tumor pyliverlesionseg-model [--evaluate]

The wheel of pyliverlesionseg 0.3 (Apache-2.0) holds the Keras HDF5 weights of its liver and lesion networks. It
is fetched once (pip download, nothing installed; the package itself needs TensorFlow 1.12 and Python 3.6),
checked against the SHA-256 PyPI publishes for it, and both networks are converted into one PyTorch file. Each is
then checked against an independent NumPy implementation of the Keras layers (lib.model.keras_reference) on a
small input, and the differences go on the card with the source, the licence and what was converted. With
--evaluate, the card also gets Dice and lesion detection on LiTS case 117 and, where ../shared/data is beside the
project, the TotalSegmentator example CT, measured through the app's InferTask.
"""

from __future__ import annotations

import logging
import platform
import tempfile
import time
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from ..data.atomic import copy_file, save_json
from ..data.fixtures import real_ct_fixtures, write_fixture
from ..data.wheels import cached_wheel
from ..metrics.dice import compare
from ..metrics.lesions import lesion_detection
from ..model.checkpoint import card_path
from ..model.generalized_unet import GeneralizedUNet, load_hdf5_weights
from ..model.keras_reference import verify
from ..model.pyliverlesionseg import STAGES, convert
from ..settings import PYLIVERLESIONSEG_WEIGHTS

logger = logging.getLogger(__name__)

REQUIREMENT = "pyliverlesionseg==0.3"
WHEEL = "pyliverlesionseg-0.3-py3-none-any.whl"
# https://pypi.org/simple/pyliverlesionseg/ publishes it as pyliverlesionseg-0.3-py3-none-any.whl#sha256=...
PUBLISHED_SHA256 = "ffe1576aefff5922ea8d1cfa2c50864cda97798798559542b9517689fd290cb8"
WHEEL_PYTHON = "3.6"  # the only Python the wheel declares; its files are read, never imported
LICENSE_MEMBER = "pyliverlesionseg-0.3.dist-info/LICENSE"
CHECK_OUTPUTS = {"liver": (1, 28, 1), "lesion": (4, 12, 2)}  # the smallest windows that run every layer


def check_port(hdf5: dict[str, Path]) -> dict[str, dict]:
    """Per network: the largest difference of any convolution and of the output, port against reference."""
    result = {}
    for stage in STAGES:
        network = GeneralizedUNet(stage.layout)
        load_hdf5_weights(network, hdf5[stage.name])
        size = network.input_size_for(CHECK_OUTPUTS[stage.name])
        x = np.random.default_rng(0).uniform(-0.5, 0.5, size).astype(np.float32)
        differences = verify(network, stage.name, hdf5[stage.name], x)
        result[stage.name] = {"input": list(size), "largest_convolution_difference": max(
            v for k, v in differences.items() if k != "output"), "output_difference": differences["output"]}
    return result


def make_pyliverlesionseg_model(out: Path = PYLIVERLESIONSEG_WEIGHTS, cache: Path | None = None,
                                find_links: str | None = None, evaluate: bool = False) -> dict:
    started = time.time()
    wheel = cached_wheel(REQUIREMENT, WHEEL, cache, find_links, WHEEL_PYTHON, PUBLISHED_SHA256)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(wheel) as zf:
        hdf5 = {stage.name: Path(zf.extract(stage.hdf5, tmp)) for stage in STAGES}
        licence = Path(zf.extract(LICENSE_MEMBER, tmp))
        check = check_port(hdf5)
        card = {
            "model": "pyliverlesionseg 0.3: liver network (3 mm) and lesion network (1 x 1 x 3 mm)",
            "trained_on": "CT and MR of patients treated with SIRT (liver network: Tang et al., EJNMMI 47, 2020, "
                          "KU Leuven); the lesion network's training data is not documented",
            "source": f"PyPI {REQUIREMENT}, {WHEEL} (sha256 {PUBLISHED_SHA256}), "
                      + ", ".join(stage.hdf5 for stage in STAGES),
            "licence": "Apache-2.0 (the wheel's LICENSE, copied beside this card)",
            "conversion": "Keras 2.2 Conv3D kernels (x, y, z, in, out) -> PyTorch (out, in, x, y, z), matched by "
                          "layer name (conv3d_k: the k-th convolution the package's create_unet_like_model makes)",
            "voxel_mm": {stage.name: list(stage.voxel_mm) for stage in STAGES},
            "port_check": {"against": "lib.model.keras_reference: the Keras layers in NumPy, float64", **check},
            "command": "liver-tumor pyliverlesionseg-model" + (" --evaluate" if evaluate else ""),
        }
        convert(hdf5, out, card)
        copy_file(licence, out.with_name(out.stem + ".LICENSE"))
    if evaluate:
        with tempfile.TemporaryDirectory() as work:
            card["evaluation"] = evaluate_on_real_ct(out, Path(work), cache, find_links)
    card["seconds"] = round(time.time() - started, 1)
    save_json(card, card_path(out))
    return card


def evaluate_on_real_ct(weights: Path, work: Path, cache: Path | None = None, find_links: str | None = None
                        ) -> dict:
    """Dice and lesion detection through the app's InferTask (as /infer runs it) on the real studies here."""
    from ..configs.pyliverlesionseg import PyLiverLesionSeg

    fixtures = real_ct_fixtures(cache, find_links)
    config = PyLiverLesionSeg()
    config.init("pyliverlesionseg", str(work / "model"), {"pyliverlesionseg_path": str(weights)}, None)
    task = config.infer()
    rows = {}
    for f in fixtures:
        write_fixture(f, work)
        image, truth = work / f"{f.id}.nii.gz", work / "truth" / f"{f.id}.nii.gz"
        began = time.perf_counter()
        label_file, result = task({"image": str(image), "device": "cpu"})
        seconds = time.perf_counter() - began
        label = nib.load(label_file)
        rows[f.id] = {**compare(Path(label_file), truth), "seconds": round(seconds, 1), "region": result["region"],
                      **lesion_detection(np.asanyarray(label.dataobj), np.asanyarray(nib.load(truth).dataobj),
                                         label.affine)}
        Path(label_file).unlink(missing_ok=True)
        logger.info("pyliverlesionseg on %s: %s", f.id, rows[f.id])
    rows["machine"] = f"{platform.machine()}, {torch.get_num_threads()} threads, CPU"
    return rows
