"""Training curves from a run's history (MONAI Label's train stats): loss, and validation Dice per class, against
epoch and against wall-clock time."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from ..data.atomic import write_atomic  # noqa: E402

SERIES = {"val_liver_dice": ("liver Dice", "#2e7d32"), "val_tumour_dice": ("tumour Dice", "#c62828"),
          "val_tumour_global_dice": ("tumour Dice, global", "#ef9a9a"),
          "val_lesion_sensitivity": ("lesions >= 10 mm found", "#6a1b9a"),
          "val_lesions_matched": ("lesions >= 10 mm matched (IoU 0.5)", "#ce93d8"),
          "val_mean_dice": ("mean Dice", "#555555")}


def plot_history(history: Sequence[dict], out: Path, title: str = "training", baseline: float | None = None,
                 key_metric: str = "val_mean_dice") -> Path:
    """One PNG: the validated epochs' loss (left) and validation Dice per class (right); published epochs marked,
    and `baseline`, the key metric of the model the run started from, as the bar to beat."""
    fig, (ax_loss, ax_dice) = plt.subplots(1, 2, figsize=(12, 3.6), width_ratios=(1, 1.4))
    epochs = [h["epoch"] for h in history]
    losses = [(h["epoch"], h["loss"]) for h in history if h.get("loss") is not None]
    if losses:
        ax_loss.plot(*zip(*losses), "o-", color="#1565c0", ms=3)
    ax_loss.set(xlabel="epoch", ylabel="training loss (the validated epochs')", title="loss")
    for key, (name, colour) in SERIES.items():
        points = [(h["epoch"], h[key]) for h in history if isinstance(h.get(key), (int, float))]
        if points:
            ax_dice.plot(*zip(*points), "o-", color=colour, ms=3, label=name)
    if baseline is not None:
        name, colour = SERIES.get(key_metric, (key_metric, "#555555"))
        ax_dice.axhline(baseline, color=colour, lw=0.8, ls="--", label=f"{name}, the model at the start")
    for h in history:
        if h.get("published"):
            ax_dice.axvline(h["epoch"], color="#999999", lw=0.6, ls=":")
    ax_dice.set(xlabel="epoch  (dotted: a model was published)", ylabel="validation Dice, sensitivity", ylim=(0, 1),
                title="validation")
    for ax in (ax_loss, ax_dice):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if epochs:
        ax_dice.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)  # beside: the lines stay seen
        # the history holds the validated epochs only: the last one is how far the run went
        elapsed = history[-1].get("elapsed_seconds")
        took = f", {elapsed / 60:.1f} min" if elapsed is not None else ""
        fig.suptitle(f"{title}: {epochs[-1]} epochs{took}", fontsize=10)
    fig.tight_layout()
    write_atomic(Path(out), lambda p: fig.savefig(p, dpi=110))
    plt.close(fig)
    return Path(out)
