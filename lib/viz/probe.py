"""The lesion probe on one chart per network: each painted lesion's contrast to the liver around it against the
network's highest tumour probability on it, visible ones (what the sensitivity target counts) filled."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..data.atomic import write_atomic  # noqa: E402
from ..metrics.lesions import VISIBLE_HU  # noqa: E402

FOUND, MISSED = "#2e7d32", "#c62828"
COLUMNS = 4


def probe_chart(result: dict, out: Path) -> Path:
    """result: lib.bench.lesion_probe.run's. Lesions whose contrast could not be measured sit on the zero line."""
    crops, models = result["crops"], result["models"]
    threshold = result["config"]["found_p"]
    cols = min(COLUMNS, len(models))
    rows = -(-len(models) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.6 * rows + 0.4), sharey=True, squeeze=False)
    top = max([abs(c["contrast_hu"] or 0.0) for c in crops] + [40.0]) * 1.1
    for ax in axes.flat[len(models):]:
        ax.set_visible(False)
    for ax, (name, m) in zip(axes.flat, models.items()):
        for sign in (1, -1):
            ax.axvspan(sign * VISIBLE_HU, sign * top, color="#e3f2fd", zorder=0)
        for c, p in zip(crops, m["max_tumour_p"]):
            colour = FOUND if p > threshold else MISSED
            ax.scatter(c["contrast_hu"] or 0.0, max(p, 1e-4), s=6 + c["diameter_mm"] ** 1.5 / 2, alpha=0.8,
                       facecolors=colour if c["visible"] else "none", edgecolors=colour)
        ax.axhline(threshold, color="#9e9e9e", lw=0.8, ls="--")
        ax.set_yscale("log")
        ax.set_ylim(1e-4, 1.5)
        ax.set_xlim(-top, top)
        ax.set_xlabel("lesion mean less the liver's around it (HU)")
        ax.set_title(f"{name}: {m['visible_found']} of {m['visible']} visible found\n"
                     f"{m['false_tumour_ml_per_crop']:g} mL false tumour a crop", fontsize=9)
    for row in axes:
        row[0].set_ylabel("highest tumour p on the lesion")
    lo, hi = result["config"]["size_mm"]
    fig.suptitle(f"one synthetic lesion of {lo:g}-{hi:g} mm a crop, {len(crops)} crops (filled: visible; "
                 "shaded: 10 HU or more off the liver)", fontsize=9)
    fig.tight_layout()
    write_atomic(Path(out), lambda p: fig.savefig(p, dpi=110))
    plt.close(fig)
    return Path(out)
