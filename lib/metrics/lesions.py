"""Lesion-level measures of a tumour segmentation against ground truth, as LiTS scores detection: a true lesion is
found when a predicted tumour overlaps it; a predicted tumour that overlaps none is a false positive. Lesions are
the 26-connected parts of each label, sized by the diameter of the sphere of the same volume."""

from __future__ import annotations

import numpy as np
from nibabel.affines import voxel_sizes
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

LIVER, TUMOUR = 1, 2
SIZE_BANDS_MM = (10.0, 20.0)  # lesions under 10 mm, 10 to 20 mm, 20 mm and over
CONNECTED = np.ones((3, 3, 3), bool)


def _hull(points: np.ndarray) -> np.ndarray:
    """The points on the convex hull (all of them when they are too few or flat)."""
    if len(points) <= 4:
        return points
    try:
        return points[ConvexHull(points).vertices]
    except QhullError:  # flat or collinear: no 3D hull, every point may be extreme
        return points


def max_diameter_mm(mask: np.ndarray, spacing_matrix: np.ndarray) -> float:
    """The largest distance across a voxel mask (its maximum Feret diameter, voxels counted as the boxes they
    are) in millimetres. `spacing_matrix` is the affine's 3x3 part; the farthest pair lies on the hull, which
    a linear map keeps, so the hull is found in voxel space."""
    points = np.argwhere(mask).astype(np.float64)
    if len(points) == 0:
        return 0.0
    corners = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)])
    boxes = _hull((_hull(points)[:, None, :] + corners[None]).reshape(-1, 3))
    world = boxes @ np.asarray(spacing_matrix, dtype=np.float64).T
    return max(float(np.max(np.linalg.norm(world - p, axis=1))) for p in world)


def equivalent_diameter_mm(volume_ml: float) -> float:
    """The diameter of a sphere of this volume."""
    return float((6.0 * volume_ml * 1000.0 / np.pi) ** (1.0 / 3.0))


def band(diameter_mm: float) -> str:
    small, large = SIZE_BANDS_MM
    return f"under {small:g} mm" if diameter_mm < small else (f"{small:g} to {large:g} mm" if diameter_mm < large
                                                              else f"{large:g} mm and over")


VISIBLE_HU = 10.0  # a lesion whose mean differs from the liver around it by this much or more counts as visible
SHELL_MM = (1.0, 5.0)  # "the liver around it": liver voxels this far from the lesion, past its partial-volume edge
MIN_SHELL_VOXELS = 20


def is_visible(diameter_mm: float, contrast: float | None) -> bool:
    """What the sensitivity target counts: 10 mm or more, its mean VISIBLE_HU or more off the liver around it."""
    return diameter_mm >= SIZE_BANDS_MM[0] and contrast is not None and abs(contrast) >= VISIBLE_HU


def contrast_hu(image: np.ndarray, lesion: np.ndarray, liver: np.ndarray, spacing: np.ndarray) -> float | None:
    """The lesion's mean CT number less that of the liver around it (SHELL_MM), from the image itself; None when
    too little liver surrounds it. The arrays are a box holding the lesion and SHELL_MM around it. (Measured, not
    taken from how a phantom was drawn: a lesion with a bright rim round a dark core can have the liver's mean.)"""
    distance = ndimage.distance_transform_edt(~lesion, sampling=spacing)
    shell = (distance > SHELL_MM[0]) & (distance <= SHELL_MM[1]) & liver
    if shell.sum() < MIN_SHELL_VOXELS:
        return None
    return float(image[lesion].mean() - image[shell].mean())


MATCH_IOU = 0.5  # a found lesion is also matched when it and the predicted components touching it overlap this much


def overlap_iou(lesion_voxels: int, overlap_voxels: int, touching_voxels: int) -> float:
    """IoU of a true lesion with the predicted components that touch it (whole components): one component over
    several lesions, or over the liver around one, is a find by overlap but a poor match."""
    union = lesion_voxels + touching_voxels - overlap_voxels
    return overlap_voxels / union if union else 0.0


def grown_box(box: tuple[slice, ...], by: np.ndarray | list[int], shape: tuple[int, ...]) -> tuple[slice, ...]:
    """`box` widened by `by` voxels on each axis (a number per axis), within an array of `shape`."""
    return tuple(slice(max(0, b.start - int(n)), min(s, b.stop + int(n))) for b, n, s in zip(box, by, shape))


def lesion_detection(pred: np.ndarray, truth: np.ndarray, affine: np.ndarray, known: list[dict] | None = None,
                     image: np.ndarray | None = None) -> dict:
    """Per size band, how many true lesions a prediction finds (a predicted tumour component overlaps them) and
    matches (their IoU with the components that touch them is MATCH_IOU or more), and each one's size, whether
    found and its IoU; how many
    predicted lesions are false positives (with their volumes); label arrays 0/1/2 on the grid of `affine`.
    `known`: what is known of the true lesions (a phantom's tumours: "kind", "centre_ras_mm"): then also per kind.
    `image`: the CT numbers on that grid: then also each one's contrast (contrast_hu) and the visible ones of 10 mm
    or more (mean differing from the liver around by VISIBLE_HU), found of how many."""
    voxel_ml = abs(float(np.linalg.det(np.asarray(affine)[:3, :3]))) / 1000.0
    spacing = voxel_sizes(np.asarray(affine, float))
    true_parts, n_true = ndimage.label(truth == TUMOUR, structure=CONNECTED)
    pred_parts, n_pred = ndimage.label(pred == TUMOUR, structure=CONNECTED)
    true_ml = np.bincount(true_parts.ravel(), minlength=n_true + 1) * voxel_ml
    boxes = ndimage.find_objects(true_parts)
    described = _describe(true_parts, affine, known) if known is not None else {}
    bands: dict[str, list[int]] = {band(0.0): [0, 0, 0], band(SIZE_BANDS_MM[0]): [0, 0, 0],
                                   band(SIZE_BANDS_MM[1]): [0, 0, 0]}
    kinds: dict[str, list[int]] = {}
    visible = [0, 0, 0]
    each: list[dict] = []
    pred_size = np.bincount(pred_parts.ravel(), minlength=n_pred + 1)
    for k, box in enumerate(boxes, start=1):
        lesion = true_parts[box] == k
        touching = pred_parts[box][lesion]
        found = bool((touching > 0).any())
        iou = overlap_iou(int(lesion.sum()), int((touching > 0).sum()),
                          int(pred_size[np.unique(touching[touching > 0])].sum()))
        matched = iou >= MATCH_IOU
        diameter = equivalent_diameter_mm(true_ml[k])
        counts = bands[band(diameter)]
        counts[0] += int(found)
        counts[1] += 1
        counts[2] += int(matched)
        each.append({"diameter_mm": round(diameter, 1), "found": found, "iou": round(iou, 3)})
        if known is not None:
            each[-1]["kind"] = described.get(k, {}).get("kind", "unknown")
            kind = kinds.setdefault(each[-1]["kind"], [0, 0])
            kind[0] += int(found)
            kind[1] += 1
        if image is not None:
            grown = grown_box(box, np.ceil(SHELL_MM[1] / spacing) + 1, truth.shape)
            contrast = contrast_hu(image[grown], true_parts[grown] == k, truth[grown] == LIVER, spacing)
            each[-1]["contrast_hu"] = None if contrast is None else round(contrast, 1)
            if is_visible(diameter, contrast):
                visible[0] += int(found)
                visible[1] += 1
                visible[2] += int(matched)
    overlapped = np.unique(pred_parts[(true_parts > 0) & (pred_parts > 0)])
    false = [k for k in range(1, n_pred + 1) if k not in set(overlapped.tolist())]
    return {
        "true_lesions": int(n_true), "found": int(sum(c[0] for c in bands.values())),
        "tumour_voxels": int((true_parts > 0).sum() + (pred_parts > 0).sum()),
        "tumour_overlap_voxels": int(((true_parts > 0) & (pred_parts > 0)).sum()),
        "found_by_size": {name: {"found": c[0], "of": c[1], "matched": c[2]} for name, c in bands.items()},
        "true_lesion_list": each,
        "predicted_lesions": int(n_pred), "false_positives": len(false),
        "false_positive_ml": [round(float(pred_size[k] * voxel_ml), 3) for k in false],
        **({"found_by_kind": {k: {"found": f, "of": n} for k, (f, n) in sorted(kinds.items())}}
           if known is not None else {}),
        **({"found_visible_10mm": {"found": visible[0], "of": visible[1], "matched": visible[2]}}
           if image is not None else {}),
    }


def _describe(parts: np.ndarray, affine: np.ndarray, known: list[dict]) -> dict[int, dict]:
    """The known lesion each true part holds: the one whose centre lies in it, else the part most of the voxels
    within a lesion's radius of its centre belong to. A part several known lesions fall into (they touch) takes
    the most visible one."""
    inverse = np.linalg.inv(np.asarray(affine, float))
    spacing = voxel_sizes(np.asarray(affine, float))
    out: dict[int, dict] = {}
    for lesion in known:
        centre = (inverse @ np.append(lesion["centre_ras_mm"], 1.0))[:3]
        reach = np.ceil(lesion.get("diameter_mm", 0) / 2 / spacing).astype(int)
        box = tuple(slice(max(0, int(round(c)) - r), max(0, int(round(c)) + r + 1)) for c, r in zip(centre, reach))
        inside = parts[box]
        ids = inside[inside > 0]
        if ids.size == 0:
            continue
        at = tuple(int(round(c)) for c in centre)
        k = int(parts[at]) if all(0 <= a < n for a, n in zip(at, parts.shape)) and parts[at] else \
            int(np.bincount(ids).argmax())
        if k not in out or abs(lesion.get("contrast_hu", 0)) > abs(out[k].get("contrast_hu", 0)):
            out[k] = lesion
    return out
