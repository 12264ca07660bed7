"""A montage of studies for a quick look: per study an axial and a coronal slice through the liver, in the
radiological convention (patient's right on the left, anterior up), abdominal window, label outlines (and, where
a ground truth is given, its tumours dashed, to hold predicted lesions against them)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

from ..data.atomic import write_atomic  # noqa: E402

WINDOW = (-160.0, 240.0)  # level 40, width 400
COLOURS = {1: "#39d353", 2: "#ff4d4d"}
TRUTH_TUMOUR = "#ffd600"


def _axial(a: np.ndarray, k: int) -> np.ndarray:
    return a[::-1, ::-1, k].T  # rows anterior to posterior, columns patient right to left


def _coronal(a: np.ndarray, j: int) -> np.ndarray:
    return a[::-1, j, ::-1].T  # rows superior to inferior, columns patient right to left


def _centre(label: np.ndarray | None, shape) -> tuple[int, int]:
    """The coronal and axial slices that show the most liver, tumour weighing more (the volume's centre
    without a label)."""
    if label is None or not (label > 0).any():
        return shape[1] // 2, shape[2] // 2
    weight = (label == 1) + 20.0 * (label == 2)
    return int(np.argmax(weight.sum(axis=(0, 2)))), int(np.argmax(weight.sum(axis=(0, 1))))


def montage(rows: Sequence[tuple], out: Path, title: str | None = None) -> Path:
    """Write a PNG with one row (axial, coronal) per (name, image path, label path or None[, truth path])."""
    if not rows:
        raise ValueError("nothing to show: no studies")
    fig, axes = plt.subplots(len(rows), 2, figsize=(8, 3.6 * len(rows)), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 1]})
    for (name, image_path, label_path, *truth_path), (ax_a, ax_c) in zip(rows, axes):
        img = nib.as_closest_canonical(nib.load(str(image_path)))
        data = np.asanyarray(img.dataobj).astype(np.float32)
        label = truth = None
        if label_path is not None:
            label = np.asanyarray(nib.as_closest_canonical(nib.load(str(label_path))).dataobj).astype(np.uint8)
        if truth_path and truth_path[0] is not None:
            truth = np.asanyarray(nib.as_closest_canonical(nib.load(str(truth_path[0]))).dataobj).astype(np.uint8)
        dx, dy, dz = img.header.get_zooms()[:3]
        j, k = _centre(truth if truth is not None else label, data.shape)
        views = ((ax_a, _axial, dy / dx, f"axial {k}"), (ax_c, _coronal, dz / dx, f"coronal {j}"))
        for ax, view, aspect, where in views:
            idx = k if view is _axial else j
            ax.imshow(view(data, idx), cmap="gray", vmin=WINDOW[0], vmax=WINDOW[1], aspect=aspect,
                      interpolation="nearest")
            if label is not None:
                sl = view(label, idx)
                for value, colour in COLOURS.items():
                    if (sl == value).any():
                        ax.contour((sl == value).astype(float), levels=[0.5], colors=colour, linewidths=0.8)
            if truth is not None and (view(truth, idx) == 2).any():
                ax.contour((view(truth, idx) == 2).astype(float), levels=[0.5], colors=TRUTH_TUMOUR, linewidths=0.8,
                           linestyles="dashed")
            ax.set_title(f"{name}  {where}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    write_atomic(out, lambda p: fig.savefig(p, dpi=110))
    plt.close(fig)
    return out
