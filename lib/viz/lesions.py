"""Every true lesion of an evaluation on one chart: its size against its contrast to the liver around it, found or
missed, with the band the sensitivity target counts (10 mm or more, 10 HU or more either way) shaded."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import NullFormatter, ScalarFormatter  # noqa: E402

from ..data.atomic import write_atomic  # noqa: E402
from ..metrics.lesions import SIZE_BANDS_MM, VISIBLE_HU, is_visible  # noqa: E402

FOUND, MISSED = "#2e7d32", "#c62828"


def lesion_chart(rows: list[dict], out: Path, title: str) -> Path:
    """rows: evaluate()'s, whose lesions list each true lesion (true_lesion_list). Lesions without a measured
    contrast (no liver around them) sit on the zero line, drawn smaller."""
    lesions = [d for r in rows for d in r["lesions"].get("true_lesion_list", [])]
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    top = max([abs(d.get("contrast_hu") or 0.0) for d in lesions] + [60.0]) * 1.1
    right = max([d["diameter_mm"] for d in lesions] + [50.0]) * 1.3
    for sign in (1, -1):
        ax.fill_between([SIZE_BANDS_MM[0], right], sign * VISIBLE_HU, sign * top, color="#e3f2fd", zorder=0)
    for found, colour, label in ((True, FOUND, "found"), (False, MISSED, "missed")):
        measured = [d for d in lesions if d["found"] is found and d.get("contrast_hu") is not None]
        unmeasured = [d for d in lesions if d["found"] is found and d.get("contrast_hu") is None]
        ax.scatter([d["diameter_mm"] for d in measured], [d["contrast_hu"] for d in measured], s=28, color=colour,
                   alpha=0.8, label=f"{label} ({len(measured) + len(unmeasured)})")
        ax.scatter([d["diameter_mm"] for d in unmeasured], [0.0] * len(unmeasured), s=8, color=colour, alpha=0.5)
    visible = [d for d in lesions if is_visible(d["diameter_mm"], d.get("contrast_hu"))]
    ax.set_xscale("log")
    ax.set_xlim(2, right)
    ax.set_xticks([t for t in (2, 5, 10, 20, 50, 100, 200) if t < right])
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_ylim(-top, top)
    ax.axhline(0, color="#9e9e9e", lw=0.6)
    ax.set_xlabel("diameter of the sphere of the same volume (mm)")
    ax.set_ylabel("mean CT number less the liver's around it (HU)")
    ax.set_title(f"{title}: {sum(d['found'] for d in visible)} of {len(visible)} visible lesions of 10 mm or more "
                 f"found (shaded)", fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    write_atomic(Path(out), lambda p: fig.savefig(p, dpi=110))
    plt.close(fig)
    return Path(out)
