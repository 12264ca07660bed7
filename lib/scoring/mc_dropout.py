"""Epistemic uncertainty of the model on a study, from Monte Carlo dropout, cached per model version.

Predictive entropy of the mean of several dropout passes, averaged over the predicted liver and a margin around
it (where the annotator's work is), normalised to 0..1 by ln(3): a big liver does not score high by size alone.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from monai.inferers import SlidingWindowInferer
from monai.transforms import Compose, LoadImaged
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.scoring import ScoringMethod
from scipy import ndimage

from ..configs.settings import Settings
from ..infers.autocast import AutocastInferer, autocast_dtype
from ..infers.liver_tumor import preprocessing
from ..model.checkpoint import load_network
from ..model.network import enable_mc_dropout

logger = logging.getLogger(__name__)
INFO_KEY = "mc_dropout"
MARGIN_MM = 10.0


def model_version(path: str | None) -> str | None:
    """Identifies the weights in use: their file and its modification time."""
    return None if path is None else f"{Path(path).name}@{os.stat(path).st_mtime_ns}"


def mc_dropout_uncertainty(image_path: str, network: torch.nn.Module, samples: int, spacing, roi, device: str,
                           seed: int = 0) -> dict:
    start = time.time()
    data = Compose([LoadImaged(keys="image"), *preprocessing(spacing)])({"image": image_path})
    x = data["image"][None].to(device)
    net = enable_mc_dropout(copy.deepcopy(network).to(device))
    dtype = autocast_dtype(device, True, torch.device(device).type == "cpu"
                           and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    inferer = AutocastInferer(SlidingWindowInferer(roi_size=roi, overlap=0.0, sw_batch_size=1),
                              torch.device(device).type, dtype)
    generator_state = torch.get_rng_state()
    torch.manual_seed(seed)  # the same dropout masks for the same study and model: scores are reproducible
    with torch.no_grad():
        mean = sum(torch.softmax(inferer(x, net), dim=1) for _ in range(samples)) / samples
    torch.set_rng_state(generator_state)
    mean = mean[0].float().cpu().numpy()
    entropy = -(mean * np.log(np.clip(mean, 1e-8, 1.0))).sum(0) / math.log(mean.shape[0])
    liver = mean.argmax(0) > 0
    region = liver
    if liver.any():
        region = ndimage.distance_transform_edt(~liver, sampling=spacing) <= MARGIN_MM
    else:
        region = np.ones_like(liver)
    return {
        "score": round(float(entropy[region].mean()), 6),
        "predicted_liver_ml": round(float(liver.sum()) * float(np.prod(spacing)) / 1000.0, 1),
        "samples": samples,
        "seconds": round(time.time() - start, 2),
    }


class UncertaintyScorer:
    """Scores studies with the model in use, keeping each score in the datastore with the model's version."""

    def __init__(self, settings: Settings, current_model: Callable[[], str | None]) -> None:
        self.settings, self.current_model = settings, current_model
        self._network: tuple[str, torch.nn.Module] | None = None

    def version(self) -> str | None:
        return model_version(self.current_model())

    def cached(self, image_id: str, datastore: Datastore) -> dict | None:
        info = datastore.get_image_info(image_id).get(INFO_KEY)
        return info if isinstance(info, dict) and info.get("model") == self.version() else None

    def score(self, image_id: str, datastore: Datastore) -> dict:
        found = self.cached(image_id, datastore)
        if found:
            return found
        version = self.version()
        if self._network is None or self._network[0] != version:
            self._network = (version, load_network(Path(self.current_model()), self.settings.dropout))
        device = "cuda" if torch.cuda.is_available() else "cpu"
        result = mc_dropout_uncertainty(datastore.get_image_uri(image_id), self._network[1], self.settings.mc_samples,
                                        self.settings.uncertainty_spacing, self.settings.roi_size, device)
        result["model"] = version
        datastore.update_image_info(image_id, {INFO_KEY: result})
        logger.info(f"MC-dropout uncertainty of {image_id}: {result}")
        return result


class MCDropoutScoring(ScoringMethod):
    """Scores every study without a final label that has no score for the model in use yet."""

    def __init__(self, scorer: UncertaintyScorer) -> None:
        super().__init__("MC-dropout predictive entropy around the predicted liver (0..1), per model version")
        self.scorer = scorer

    def __call__(self, request, datastore: Datastore):
        if self.scorer.version() is None:
            return {}
        return {image_id: self.scorer.score(image_id, datastore) for image_id in datastore.get_unlabeled_images()}
