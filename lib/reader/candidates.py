"""Tumour candidates and what the reader knows of each: the union of the shipped model's tumours and the lesion
network's (components of 0.25 mL or more), each measured on the study's own CT numbers (run R1, docs/model-log.md)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

MIN_ML, LESION_THRESHOLD = 0.25, 0.5
NEAR_VOXELS = 2  # the lesion network's tumour counts within this many voxels of the shipped model's liver
RING_MM, EDGE_MM, PAD_MM = (1.0, 6.0), 3.0, 8.0
FEATURES = ("log_ml", "p_max", "p_mean", "shipped_frac", "hu_mean", "hu_sd", "ring_hu", "ring_sd", "contrast",
            "abs_contrast", "cnr", "elongation", "extent", "edge_frac", "liver_hu")


def candidates(label: np.ndarray, prob: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """The union's components of MIN_ML or more, numbered from 1 (0: none)."""
    near = ndimage.binary_dilation(label > 0, iterations=NEAR_VOXELS)
    parts, n = ndimage.label(((prob >= LESION_THRESHOLD) & near) | (label == 2))
    ml = np.bincount(parts.ravel(), minlength=n + 1) * float(np.prod(spacing)) / 1000
    keep = np.flatnonzero(ml >= MIN_ML)
    lut = np.zeros(n + 1, np.int32)
    lut[keep[keep > 0]] = np.arange(1, len(keep[keep > 0]) + 1)
    return lut[parts]


def measurements(ct: np.ndarray, label: np.ndarray, prob: np.ndarray, parts: np.ndarray,
                 spacing: np.ndarray) -> np.ndarray:
    """(candidates, FEATURES): each candidate's size, the lesion network's probability over it, the share the
    shipped model calls tumour, its CT numbers against the liver ring around it, its shape, how much of it lies at
    the liver's edge, and the liver's CT number."""
    liver = (label == 1) & (parts == 0)
    liver_hu = float(np.median(ct[liver])) if liver.any() else 0.0
    voxel_ml = float(np.prod(spacing)) / 1000
    pad = np.ceil(PAD_MM / spacing).astype(int)
    rows = []
    for i, sl in enumerate(ndimage.find_objects(parts), start=1):
        box = tuple(slice(max(s.start - p, 0), min(s.stop + p, n)) for s, p, n in zip(sl, pad, parts.shape))
        part = parts[box] == i
        # the depth in the liver within the box alone: its pad (PAD_MM >= EDGE_MM) holds all the background within
        # EDGE_MM of the candidate, so `depth <= EDGE_MM` is what the whole region's distance map says
        depth = ndimage.distance_transform_edt(label[box] > 0, sampling=spacing)
        distance = ndimage.distance_transform_edt(~part, sampling=spacing)
        ring = (distance > RING_MM[0]) & (distance <= RING_MM[1]) & liver[box]
        hu = ct[box][part]
        around = ct[box][ring] if ring.sum() >= 10 else ct[liver] if liver.any() else hu
        xyz = np.argwhere(part) * spacing
        eig = np.sort(np.linalg.eigvalsh(np.cov(xyz.T) if len(xyz) > 3 else np.eye(3)))
        contrast = float(hu.mean() - np.median(around))
        rows.append([np.log10(part.sum() * voxel_ml), prob[box][part].max(), prob[box][part].mean(),
                     (label[box][part] == 2).mean(), hu.mean(), hu.std(), np.median(around), around.std(),
                     contrast, abs(contrast), abs(contrast) / max(float(around.std()), 1.0),
                     np.sqrt(eig[-1] / max(eig[0], 0.25)), part.sum() / np.prod([s.stop - s.start for s in sl]),
                     (depth[part] <= EDGE_MM).mean(), liver_hu])
    return np.asarray(rows, float).reshape(-1, len(FEATURES))
