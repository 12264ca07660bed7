"""What an annotator wants to know about a segmentation: volumes, lesion count and sizes, in the returned
label's own geometry."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError


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


def lesion_report(label: np.ndarray, affine: np.ndarray) -> dict:
    """label (X, Y, Z) 0/1/2 on the grid of `affine`."""
    voxel_ml = abs(float(np.linalg.det(np.asarray(affine)[:3, :3]))) / 1000.0
    tumour, count = ndimage.label(label == 2, structure=np.ones((3, 3, 3)))
    counts = np.bincount(tumour.ravel())[1:] if count else np.array([], dtype=np.int64)
    sizes = counts * voxel_ml
    largest = 0.0
    if count:
        index = int(np.argmax(counts))
        box = ndimage.find_objects(tumour)[index]
        largest = max_diameter_mm(tumour[box] == index + 1, np.asarray(affine)[:3, :3])
    return {
        "label_names": {"background": 0, "liver": 1, "tumour": 2},
        "liver_volume_ml": round(float((label == 1).sum() * voxel_ml), 2),
        "tumour_volume_ml": round(float((label == 2).sum() * voxel_ml), 3),
        "tumour_count": int(count),
        "lesion_volumes_ml": [round(float(v), 3) for v in sorted(sizes, reverse=True)],
        "largest_lesion_diameter_mm": round(largest, 1),
    }


class LesionReportd:
    """lesion_report of the final label, merged into the result JSON."""

    def __init__(self, label_key: str, json_key: str) -> None:
        self.label_key, self.json_key = label_key, json_key

    def __call__(self, data):
        d = dict(data)
        pred = d[self.label_key]
        report = lesion_report(np.asarray(pred.cpu()), np.asarray(pred.affine.cpu()))
        d[self.json_key] = {**d.get(self.json_key, {}), **report}
        return d
