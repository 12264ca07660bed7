"""Crop centres where the model being fine-tuned errs on tumours: its false-positive tumour components and the true
lesions it misses entirely, found once per training study when a run starts.

Why: the app is judged by lesions found and false positives, and random crops, even crops centred on tumour, rarely
land on the few lesions the model misses or on the liver it calls tumour (hard-example mining; MONAI has crops by
class or by a weight map, nothing that asks the model where it errs). The errors are counted as `bench accuracy`
counts them: a true lesion is missed when no predicted tumour voxel touches it, a predicted component is a false
positive when it touches no true tumour and is at least `min_tumour_ml` (smaller ones the clean-up removes).
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Sequence

import numpy as np
import torch
from monai.transforms import MapTransform
from scipy import ndimage

from ..metrics.lesions import CONNECTED, TUMOUR
from ..model.autocast import AutocastInferer
from ..transforms.denoise import SmoothNoisyd
from .validation import FittedWindows

logger = logging.getLogger(__name__)

BOX_MARGIN_MM = 20.0  # around the true liver: the clean-up keeps tumour only near the liver


def error_parts(pred: np.ndarray, label: np.ndarray, min_voxels: int) -> tuple[np.ndarray, int, int]:
    """Labelled components of where the prediction errs on tumours: first the true tumour components that no
    predicted tumour touches (1..missed), then the predicted ones of min_voxels or more that touch no true tumour
    (missed+1..missed+false); 0 elsewhere. Returns the labels, missed, false."""
    truth, found = label == TUMOUR, pred == TUMOUR
    parts = np.zeros(truth.shape, np.int32)
    true_parts, n = ndimage.label(truth, structure=CONNECTED)
    hit = np.bincount(true_parts.ravel(), weights=found.ravel(), minlength=n + 1) > 0
    missed = np.flatnonzero(~hit[1:]) + 1
    renumber = np.zeros(n + 1, np.int32)
    renumber[missed] = np.arange(1, len(missed) + 1)
    parts += renumber[true_parts]
    pred_parts, n = ndimage.label(found, structure=CONNECTED)
    size = np.bincount(pred_parts.ravel(), minlength=n + 1)
    touches = np.bincount(pred_parts.ravel(), weights=truth.ravel(), minlength=n + 1) > 0
    false = np.flatnonzero((size[1:] >= min_voxels) & ~touches[1:]) + 1
    renumber = np.zeros(n + 1, np.int32)
    renumber[false] = np.arange(1, len(false) + 1) + len(missed)
    parts += renumber[pred_parts]  # a false component touches no true tumour, so no voxel is in both
    return parts, len(missed), len(false)


def liver_box(label: np.ndarray, margin: Sequence[int]) -> tuple[slice, ...] | None:
    """The box of the label's foreground grown by margin voxels per axis, within the volume; None for an empty
    label. (MONAI's generate_spatial_bounding_box does not clip a margin to the volume.)"""
    where = np.argwhere(label > 0)
    if not len(where):
        return None
    lo = np.maximum(where.min(0) - np.asarray(margin), 0)
    hi = np.minimum(where.max(0) + np.asarray(margin) + 1, label.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


@torch.no_grad()
def predict(network: torch.nn.Module, image: torch.Tensor, roi: tuple[int, int, int], overlap: float,
            dtype: torch.dtype | None, smooth_above_hu: float, smooth_sigma_mm: float,
            spacing: tuple[float, float, float]) -> np.ndarray:
    """The network's argmax on a pre-processed image (channel first), as /infer and validation run it: smoothed
    when noisier than smooth_above_hu (SmoothNoisyd), in sliding windows fitted to the image (FittedWindows)."""
    image = SmoothNoisyd("image", "noise", smooth_above_hu, smooth_sigma_mm, spacing)({"image": image})["image"]
    device = next(network.parameters()).device
    x = torch.as_tensor(image)[None].float().to(device)
    return AutocastInferer(FittedWindows(roi, overlap), device.type, dtype)(x, network)[0].argmax(0).cpu().numpy()


def hard_centres(network: torch.nn.Module, image: torch.Tensor, label: torch.Tensor, spacing: Sequence[float],
                 min_tumour_ml: float, max_centres: int, rng: np.random.Generator, **predict_options
                 ) -> tuple[torch.Tensor, int, int]:
    """Flat indices (into the image's spatial shape, as MONAI's ClassesToIndicesd gives them) of at most
    max_centres voxels where the network errs on tumours, within the true liver's box, as many from each error (a
    missed lesion, a false-positive component) as from any other: each counts one in the lesion count, whatever
    its size. Also how many lesions it missed and how many false positives it made."""
    empty = torch.zeros(0, dtype=torch.int64)
    lab = np.asarray(label[0])
    box = liver_box(lab, [int(round(BOX_MARGIN_MM / s)) for s in spacing])
    if box is None:
        return empty, 0, 0
    pred = predict(network, image[(slice(None), *box)], spacing=tuple(spacing), **predict_options)
    min_voxels = int(np.ceil(min_tumour_ml * 1000.0 / float(np.prod(spacing))))
    parts, missed, false = error_parts(pred, lab[box], min_voxels)
    if not missed + false:
        return empty, 0, 0
    share = max(1, max_centres // (missed + false))
    chosen = []
    for voxels in ndimage.value_indices(parts, ignore_value=0).values():
        where = np.stack(voxels, 1)
        chosen.append(where[rng.choice(len(where), share, replace=False)] if len(where) > share else where)
    local = np.concatenate(chosen)
    offset = np.array([s.start for s in box])
    flat = np.ravel_multi_index(tuple((local + offset).T), lab.shape)
    return torch.as_tensor(np.sort(flat), dtype=torch.int64), missed, false


def study_id(item: dict) -> str:
    """A pre-processed study's identity: the image file it was loaded from."""
    return str(item["image"].meta["filename_or_obj"])


def centre_table(prepared: Callable[[int], dict], count: int,
                 centres: Callable[[dict], tuple[torch.Tensor, int, int]]) -> dict[str, torch.Tensor]:
    """{study id: hard centres} for studies 0..count-1 of a training set, logging progress."""
    table: dict[str, torch.Tensor] = {}
    started, missed, false = time.time(), 0, 0
    for i in range(count):
        item = prepared(i)
        table[study_id(item)], m, f = centres(item)
        missed, false = missed + m, false + f
        logger.info("hard crops: %d/%d studies, %d lesions missed and %d false positives so far, %.0f s", i + 1,
                    count, missed, false, time.time() - started)
    return table


class AddHardCentresd(MapTransform):
    """Appends a study's hard centres to its crop centres by class (key), as a fourth class for
    RandCropByLabelClassesd; a study without any gets none (its ratio is then spread over the others)."""

    def __init__(self, key: str, table: dict[str, torch.Tensor]) -> None:
        super().__init__(keys=[key])
        self.key, self.table = key, table

    def __call__(self, data):
        d = dict(data)
        d[self.key] = [*d[self.key][:3], self.table.get(study_id(d), torch.zeros(0, dtype=torch.int64))]
        return d
