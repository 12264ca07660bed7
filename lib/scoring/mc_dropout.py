"""Epistemic uncertainty of the model on a study (MC dropout) and its bottleneck embedding, cached per model version
in the datastore, and network-free image features, cached per study (lib.scoring.signals says what they
are). Computed at `uncertainty_spacing`, coarser than inference."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Callable

import torch
from monai.transforms import Compose, LoadImaged
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.scoring import ScoringMethod

from ..model.checkpoint import load_network
from ..settings import Settings
from ..transforms.preprocess import preprocessing
from .signals import image_features, mc_dropout_signals

logger = logging.getLogger(__name__)
INFO_KEY = "mc_dropout"
FEATURES_KEY = "image_features"
FEATURES_VERSION = 1  # of lib.scoring.signals.image_features: a change there must bump it
SIGNALS_VERSION = 2  # of lib.scoring.signals.mc_dropout_signals' fields (2: class_entropy): a change must bump it


def model_version(path: str | None) -> str | None:
    """Identifies the weights in use: their file and its modification time."""
    return None if path is None else f"{Path(path).name}@{os.stat(path).st_mtime_ns}"


def _preprocessed(image_path: str, spacing) -> torch.Tensor:
    """(1, X, Y, Z): the inference pre-processing at the given spacing."""
    return Compose([LoadImaged(keys="image"), *preprocessing(spacing)])({"image": image_path})["image"]


class UncertaintyScorer:
    """Scores studies with the model in use, keeping each score in the datastore with the model's version."""

    def __init__(self, settings: Settings, current_model: Callable[[], str | None]) -> None:
        self.settings, self.current_model = settings, current_model
        self._network: tuple[str, torch.nn.Module] | None = None
        self.activity = "not running"  # what the server's background scorer is doing (lib.scoring.background)

    def version(self) -> str | None:
        return model_version(self.current_model())

    def progress(self, datastore: Datastore) -> dict:
        """How far scoring is for the model in use (/info asks at every inference: the model file is read once)."""
        ids, version = datastore.list_images(), self.version()
        return {"model": version, "scored": sum(self.cached(i, datastore, version) is not None for i in ids),
                "total": len(ids), "image_features": sum(self.cached_features(i, datastore) is not None for i in ids),
                "activity": self.activity}

    def cached(self, image_id: str, datastore: Datastore, version: str | None = None) -> dict | None:
        """The study's score for the model in use (version: that model's, when the caller has it already); a score
        with fields of an older SIGNALS_VERSION counts as none."""
        info = datastore.get_image_info(image_id).get(INFO_KEY)
        return info if isinstance(info, dict) and info.get("model") == (version or self.version()) and \
            info.get("signals") == SIGNALS_VERSION else None

    def score(self, image_id: str, datastore: Datastore, before_layer: Callable[[], None] | None = None) -> dict:
        """The cached score, else one computed now (before_layer: see mc_dropout_signals)."""
        found = self.cached(image_id, datastore)
        if found:
            return found
        version = self.version()
        if self._network is None or self._network[0] != version:
            self._network = (version, load_network(Path(self.current_model()), self.settings.dropout))
        device = "cuda" if torch.cuda.is_available() else "cpu"
        x = _preprocessed(datastore.get_image_uri(image_id), self.settings.uncertainty_spacing)[None]
        result = mc_dropout_signals(x, self._network[1], self.settings.mc_samples, self.settings.uncertainty_spacing,
                                    self.settings.roi_size, device, before_layer=before_layer)
        result["model"], result["signals"] = version, SIGNALS_VERSION
        datastore.update_image_info(image_id, {INFO_KEY: result})
        logger.info(f"MC-dropout uncertainty of {image_id}: score {result['score']} in {result['seconds']} s")
        return result

    @staticmethod
    def cached_features(image_id: str, datastore: Datastore) -> list[float] | None:
        info = datastore.get_image_info(image_id).get(FEATURES_KEY)
        return info["features"] if isinstance(info, dict) and info.get("version") == FEATURES_VERSION else None

    def image_features(self, image_id: str, datastore: Datastore) -> list[float]:
        """Network-free features of a study (cold start), cached: the image does not change."""
        found = self.cached_features(image_id, datastore)
        if found is not None:
            return found
        start = time.time()
        features = image_features(_preprocessed(datastore.get_image_uri(image_id), self.settings.uncertainty_spacing))
        datastore.update_image_info(image_id, {FEATURES_KEY: {"version": FEATURES_VERSION, "features": features,
                                                              "seconds": round(time.time() - start, 2)}})
        return features


class MCDropoutScoring(ScoringMethod):
    """Scores every study that has no score for the model in use yet, unlabelled ones first (the labelled ones'
    embeddings tell the diversity strategy what is covered already)."""

    def __init__(self, scorer: UncertaintyScorer) -> None:
        super().__init__("MC-dropout predictive entropy around the predicted liver (0..1), per model version")
        self.scorer = scorer

    def __call__(self, request, datastore: Datastore):
        if self.scorer.version() is None:
            return {}
        return {image_id: self.scorer.score(image_id, datastore)
                for image_id in datastore.get_unlabeled_images() + datastore.get_labeled_images()}
