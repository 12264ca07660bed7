"""Bootstrapping from the model trained on patients: its labels of the studies nobody has labelled yet, kept in the
datastore under their own tag (never `final`) and trained on beside the final labels, drawn less often, so that
the app's network starts learning this scanner's studies before the first human label."""

from __future__ import annotations

import logging
import os
import tempfile
from typing import Callable

from monailabel.interfaces.datastore import Datastore

TAG = "pyliverlesionseg"  # the tag of its labels in the datastore
logger = logging.getLogger(__name__)


def ensure(datastore: Datastore, infer: Callable[[dict], tuple], device: str = "cpu") -> int:
    """Label every unlabelled study that has no such label yet; returns how many were made."""
    todo = [i for i in datastore.get_unlabeled_images() if TAG not in datastore.get_labels_by_image_id(i)]
    for n, image_id in enumerate(todo, start=1):
        label_file, _ = infer({"image": datastore.get_image_uri(image_id), "device": device, "logging": "WARNING",
                               "result_extension": ".nii.gz", "result_dtype": "uint8"})
        try:
            datastore.save_label(image_id, label_file, TAG, {"model": TAG, "use": "pseudo-label for training"})
        finally:
            if os.path.dirname(label_file) == tempfile.gettempdir():
                os.unlink(label_file)
        logger.info("pseudo-label %d of %d: %s", n, len(todo), image_id)
    return len(todo)


def datalist(datastore: Datastore) -> list[dict]:
    """The unlabelled studies that have such a label, as training data."""
    return [{"image": datastore.get_image_uri(i), "label": datastore.get_label_uri(i, TAG), "subset": "pseudo"}
            for i in datastore.get_unlabeled_images() if TAG in datastore.get_labels_by_image_id(i)]


def weighted(train: list[dict], weight: float) -> list[dict]:
    """The training list with each study of a final label repeated round(1 / weight) times, so that a pseudo-label
    is drawn `weight` times as often as a final label."""
    repeats = max(1, round(1.0 / weight))
    return [d for d in train for _ in range(1 if d.get("subset") == "pseudo" else repeats)]
