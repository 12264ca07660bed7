"""Anatomical clean-up of a liver/tumour label: one liver, tumour only in and around it, no specks."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import KeepLargestConnectedComponent, MapTransform
from scipy import ndimage

from ..metrics.lesions import grown_box

if TYPE_CHECKING:
    from ..settings import Settings

FULL_CONNECTIVITY = np.ones((3, 3, 3), bool)
BRIDGE_MM = 3.0  # strands up to twice this thick between the liver and what else the model called liver are cut
AROUND_MM = 3.0  # "what surrounds a tumour": the voxels this far from it at most


@dataclass(frozen=True)
class CleanUp:
    """What clean_label keeps of the tumour: within margin_mm of the liver, of min_tumour_ml or more, with at least
    the share min_liver_around of its surround liver or tumour; one value for every place that cleans a label."""

    margin_mm: float
    min_tumour_ml: float
    min_liver_around: float = 0.0

    @staticmethod
    def of(settings: "Settings", **changes: float) -> "CleanUp":
        """The app's settings (tumour_margin_mm, min_tumour_ml, min_liver_around_tumour), with a request's changes."""
        return replace(CleanUp(settings.tumour_margin_mm, settings.min_tumour_ml, settings.min_liver_around_tumour),
                       **changes)

    def __call__(self, label: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
        return clean_label(label, spacing, self.margin_mm, self.min_tumour_ml, self.min_liver_around)


def clean_label(label: np.ndarray, spacing: tuple[float, float, float], margin_mm: float, min_tumour_ml: float,
                min_liver_around: float = 0.0) -> np.ndarray:
    """label: (X, Y, Z) with 0/1/2. The liver is the liver found in the largest connected component of liver and
    tumour together (a large tumour does not split it in two), less what hangs on it by a thin strand; each
    tumour component, anywhere, is kept when it lies within margin_mm of that liver, holds at least min_tumour_ml
    and at least the share min_liver_around of the voxels within AROUND_MM of it are that liver or tumour. A
    removed tumour becomes liver where the liver encloses it, background elsewhere."""
    label = np.asarray(label).astype(np.uint8)
    box = _labelled_box(label, spacing)
    if box is None:
        return label
    out = np.zeros_like(label)
    out[box] = _clean_box(label[box], spacing, margin_mm, min_tumour_ml, min_liver_around)
    return out


def organ(label: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """The organ clean_label keeps: the largest connected component of liver and tumour together, less what hangs on
    it by a thin strand (boolean, the label's shape)."""
    keep = KeepLargestConnectedComponent(applied_labels=[1, 2], is_onehot=False, independent=False)
    largest = np.asarray(keep(torch.tensor(label[None])))[0] > 0  # a copy: the transform works in place
    return _without_bridges(largest, spacing)


def _labelled_box(label: np.ndarray, spacing: tuple[float, float, float]) -> tuple[slice, ...] | None:
    """The box around every labelled voxel, widened by one step of the strand cut's coarse grid and started on
    that grid, so that the clean-up inside it gives the label it gives over the whole volume (the components, the
    distances and the coarse grid are the same); None when nothing is labelled. On a study segmented whole (the
    locator's fall-back), most voxels are far from the liver: a 512 x 512 x 366 study's clean-up took 15 s."""
    along = [np.flatnonzero(np.any(label, axis=tuple(a for a in range(3) if a != axis))) for axis in range(3)]
    if not len(along[0]):
        return None
    box = []
    for axis, (where, k) in enumerate(zip(along, _coarse_step(spacing))):
        start = max(0, (int(where[0]) - k) // k * k)
        box.append(slice(start, min(label.shape[axis], int(where[-1]) + k + 1)))
    return tuple(box)


def _coarse_step(spacing: tuple[float, float, float], bridge_mm: float = BRIDGE_MM) -> tuple[int, ...]:
    return tuple(max(1, round(bridge_mm / (2 * s))) for s in spacing)


def _clean_box(label: np.ndarray, spacing: tuple[float, float, float], margin_mm: float, min_tumour_ml: float,
               min_liver_around: float = 0.0) -> np.ndarray:
    """clean_label's work on a box that holds every labelled voxel."""
    liver = (label == 1) & organ(label, spacing)
    out = liver.astype(np.uint8)
    # MONAI filters components by size, not by their distance to another class: that part is done here
    components, n = ndimage.label(label == 2, structure=FULL_CONNECTIVITY)
    if n == 0 or not liver.any():
        return out
    nearest = _distance_to_liver(components, n, liver, spacing, margin_mm)
    volume_ml = np.bincount(components.ravel(), minlength=n + 1) * float(np.prod(spacing)) / 1000.0
    kept = (nearest <= margin_mm) & (volume_ml >= min_tumour_ml)
    kept[0] = False
    if min_liver_around > 0:
        share = liver_around(components, kept, liver | (label == 2), spacing)
        kept &= share >= min_liver_around
    tumour = kept[components]
    out[tumour] = 2
    removed = (label == 2) & ~tumour
    if removed.any():
        out[enclosed(out > 0) & removed] = 1
    return out


def liver_around(components: np.ndarray, which: np.ndarray, organ: np.ndarray, spacing: tuple[float, float, float]
                 ) -> np.ndarray:
    """(n + 1,) for each component where `which` is set, the share of the voxels within AROUND_MM of it (outside
    it) that `organ` holds; 1 for the others. A lesion of the liver is mostly surrounded by liver; the gallbladder,
    the stomach or the IVC beside it, called tumour, are not (measured on the tuning phantoms: docs/model-log.md).
    Each component is measured in the box around it only."""
    share = np.ones(len(which))
    reach = [int(np.ceil(AROUND_MM / s)) + 1 for s in spacing]
    for k, box in enumerate(ndimage.find_objects(components), start=1):
        if box is None or not which[k]:
            continue
        grown = grown_box(box, reach, organ.shape)
        part = components[grown] == k
        around = ndimage.distance_transform_edt(~part, sampling=spacing) <= AROUND_MM
        around &= ~part
        share[k] = float(organ[grown][around].mean()) if around.any() else 1.0
    return share


def enclosed(mask: np.ndarray) -> np.ndarray:
    """The background voxels of `mask` that no path of background (6-connected) joins to the array's border: what
    SciPy's binary_fill_holes adds. SciPy grows the outside from the border a voxel per pass (0.46 s on the
    800-slice bench study's region); labelling the background once finds the same voxels."""
    background, _ = ndimage.label(~mask)  # SciPy's default structure: 6-connected, as binary_fill_holes
    faces = [background.take(i, axis=a) for a in range(background.ndim) for i in (0, -1)]
    outside = np.zeros(int(background.max()) + 1, bool)
    outside[np.unique(np.concatenate([f.ravel() for f in faces]))] = True
    outside[0] = True  # the mask itself
    return ~outside[background]


def _distance_to_liver(components: np.ndarray, n: int, liver: np.ndarray, spacing: tuple[float, float, float],
                       margin_mm: float) -> np.ndarray:
    """(n + 1,) the distance from each component to the liver (mm), exact where it matters, within margin_mm.

    A component with a voxel beside a liver voxel (26 neighbours) lies within one voxel's diagonal of it, so within
    the margin whenever the margin is at least that diagonal: 0 is returned for it without a distance transform.
    The others (typically a few specks outside the liver) are measured in the box around them only, widened by the
    margin (a liver voxel within margin_mm of one is inside it). On a 512 x 512 x 200 study's region, with tumours
    spread through the liver, one transform over their common box took 0.35 s of the 3.9 s /infer takes."""
    nearest = np.full(n + 1, np.inf)
    if margin_mm >= float(np.linalg.norm(spacing)):
        beside = ndimage.maximum_filter(liver.view(np.uint8), size=3).view(bool) & (components > 0)
        nearest[np.unique(components[beside])] = 0.0
    far = np.isinf(nearest)
    far[0] = False
    if not far.any():
        return nearest
    reach = [int(np.ceil(margin_mm / s)) + 1 for s in spacing]
    where = np.argwhere(far[components])
    box = tuple(slice(max(0, a - r), b + r + 1) for a, b, r in zip(where.min(0), where.max(0), reach))
    inside = far[components[box]]
    distance = ndimage.distance_transform_edt(~liver[box], sampling=spacing)[inside] if liver[box].any() \
        else np.full(int(inside.sum()), np.inf)  # (with no liver in it, scipy measures to the box's edge)
    np.minimum.at(nearest, components[box][inside], distance)
    return nearest


def _without_bridges(organ: np.ndarray, spacing: tuple[float, float, float], bridge_mm: float = BRIDGE_MM
                     ) -> np.ndarray:
    """The part of `organ` around its largest core once strands up to 2 x bridge_mm thick are cut: a model that
    spills into bowel along a thin strand (a real CT: liver Dice 0.73 with the strand, 0.90 without) loses the
    spill; every voxel goes with the core nearest to it, so the liver keeps its own edges and corners. The cores
    are found on a grid of about bridge_mm / 2 (every other voxel in-plane at 0.8 mm: a quarter of the distance
    transforms' work, which /infer pays on every study). MONAI's connected-component transforms keep or drop whole
    components; none cuts them at their narrow parts."""
    step = _coarse_step(spacing, bridge_mm)
    coarse = organ[tuple(slice(None, None, k) for k in step)]
    coarse_spacing = tuple(s * k for s, k in zip(spacing, step))
    core = ndimage.distance_transform_edt(coarse, sampling=coarse_spacing) > bridge_mm
    cores, n = ndimage.label(core, structure=FULL_CONNECTIVITY)
    if n < 2:
        return organ
    biggest = 1 + int(np.argmax(np.bincount(cores.ravel())[1:]))
    nearest = ndimage.distance_transform_edt(cores == 0, sampling=coarse_spacing, return_distances=False,
                                             return_indices=True)
    owner = cores[tuple(nearest)] == biggest
    for axis, k in enumerate(step):  # back to the full grid, each voxel with the coarse one at or before it
        owner = np.repeat(owner, k, axis=axis)
    return organ & owner[tuple(slice(0, size) for size in organ.shape)]


class LiverTumorPostprocessd(MapTransform):
    """clean_label on a (1, X, Y, Z) label, in its own voxel spacing; the MetaTensor's geometry is kept."""

    def __init__(self, key: str, rules: CleanUp) -> None:
        super().__init__(keys=[key])
        self.rules = rules

    def __call__(self, data):
        d = dict(data)
        for key in self.key_iterator(d):
            pred = d[key]
            spacing = tuple(float(s) for s in pred.pixdim[:3]) if isinstance(pred, MetaTensor) else (1.0,) * 3
            cleaned = self.rules(np.asarray(torch.as_tensor(pred)[0].cpu()), spacing)
            tensor = torch.as_tensor(cleaned[None])
            d[key] = MetaTensor(tensor, meta=pred.meta, applied_operations=pred.applied_operations) \
                if isinstance(pred, MetaTensor) else tensor
        return d


def channel_argmax(logits: torch.Tensor) -> torch.Tensor:
    """(C, X, Y, Z) -> (1, X, Y, Z) float32 class indices, the first largest channel (as torch.argmax).
    torch.argmax over a leading channel dimension is a strided reduction that takes 0.8 s on 3 x 11 M voxels on
    these CPUs; this pass over whole channels takes 0.15 s."""
    best, index = logits[0].clone(), torch.zeros(logits.shape[1:], dtype=torch.uint8, device=logits.device)
    for c in range(1, logits.shape[0]):
        larger = logits[c] > best
        index[larger] = c
        torch.maximum(best, logits[c], out=best)
    return index[None].float()  # float, as MONAI's AsDiscrete gives: Invertd resamples it


def tumour_biased(logits: torch.Tensor, bias: float) -> torch.Tensor:
    """logits (3, X, Y, Z) with `bias` added to the tumour channel (a copy; the same tensor for 0): the prior odds
    of tumour against either other class multiplied by e^bias."""
    if bias == 0:
        return logits
    out = logits.clone()
    out[2] = out[2] + bias
    return out


def unsure_tumours_dropped(logits: torch.Tensor, labels: torch.Tensor, min_probability: float,
                           max_background: float = 1.0) -> tuple[torch.Tensor, list[dict] | None]:
    """labels (1, X, Y, Z) from `logits` (3, X, Y, Z), with each tumour component whose mean tumour probability is
    under `min_probability`, or whose mean background probability is over `max_background`, given the better of
    background and liver instead; and what was dropped (voxels, mean tumour and background probability, largest
    first; None when both filters are off). The second is the network's own doubt that a component lies in the liver
    at all: the gallbladder and other structures beside the liver called tumour keep a share of background that
    lesions in the liver do not (docs/model-log.md). MONAI's connected-component transforms filter by size only; this
    filters by the model's own probabilities, on the working grid."""
    if min_probability <= 0 and max_background >= 1:
        return labels, None
    tumour = labels[0] == 2
    if not bool(tumour.any()):
        return labels, []
    components, n = ndimage.label(tumour.cpu().numpy(), structure=FULL_CONNECTIVITY)
    ids = components[components > 0]  # the tumour voxels' components, in the order boolean indexing takes them
    probability = torch.softmax(logits[:, tumour].float(), dim=0).cpu().numpy()
    voxels = np.bincount(ids, minlength=n + 1)
    tumour_mean = np.bincount(ids, weights=probability[2], minlength=n + 1) / np.maximum(voxels, 1)
    background_mean = np.bincount(ids, weights=probability[0], minlength=n + 1) / np.maximum(voxels, 1)
    doubtful = (tumour_mean < min_probability) | (background_mean > max_background)
    doubtful[0] = False
    dropped = [{"voxels": int(voxels[k]), "mean_tumour_probability": round(float(tumour_mean[k]), 3),
                "mean_background_probability": round(float(background_mean[k]), 3)}
               for k in sorted(np.flatnonzero(doubtful), key=lambda k: -voxels[k])]
    if not dropped:
        return labels, []
    unsure = torch.from_numpy(doubtful[components]).to(labels.device)
    out = labels.clone()
    out[0][unsure] = (logits[1][unsure] > logits[0][unsure]).float()
    return out, dropped
