"""The pre-annotation report: one row per study (CSV and JSON) and an overview PNG of the thumbnails."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..data.atomic import save_json, write_atomic  # noqa: E402
from .sources import Study  # noqa: E402

COLUMNS = ("id", "kind", "status", "liver_volume_ml", "tumour_count", "tumour_volume_ml",
           "largest_lesion_diameter_mm", "uncertainty", "seconds", "label", "error", "source")
ROWS_PER_PAGE = 25


def _record(out: Path, study: Study) -> dict[str, Any]:
    try:
        return json.loads((out / "records" / f"{study.id}.json").read_text())
    except (OSError, ValueError):
        return {"id": study.id, "kind": study.kind, "source": study.source, "status": "not run"}


def overview(thumbs: list[Path], out: Path) -> list[Path]:
    """The thumbnails stacked, one row per study, ROWS_PER_PAGE to a PNG (overview.png, or overview_NN.png)."""
    pages = [thumbs[i:i + ROWS_PER_PAGE] for i in range(0, len(thumbs), ROWS_PER_PAGE)]
    written = []
    for n, page in enumerate(pages, 1):
        images = [plt.imread(str(p))[..., :3] for p in page]
        width = max(im.shape[1] for im in images)
        rows = [np.pad(im, ((0, 0), (0, width - im.shape[1]), (0, 0)), constant_values=1.0) for im in images]
        path = out / ("overview.png" if len(pages) == 1 else f"overview_{n:02d}.png")
        write_atomic(path, lambda tmp, stack=np.concatenate(rows): plt.imsave(tmp, stack, format="png"))
        written.append(path)
    return written


def write_report(out: Path, studies: Sequence[Study], skipped_files: list[str], world: int) -> dict[str, Any]:
    rows = [_record(out, s) for s in studies]
    ranks = []
    for r in range(world):
        try:
            ranks.append(json.loads((out / "ranks" / f"rank_{r}.json").read_text()))
        except (OSError, ValueError):
            pass
    processed = sum(r["processed"] for r in ranks)
    seconds = max((r["seconds"] for r in ranks), default=0.0)
    ok = [r for r in rows if r.get("status") == "ok"]
    summary = {
        "studies": len(rows), "ok": len(ok), "failed": sum(r.get("status") == "failed" for r in rows),
        "not_run": sum(r.get("status") == "not run" for r in rows),
        "processed_this_run": processed, "seconds_this_run": round(seconds, 1),
        "studies_per_minute": round(60.0 * processed / seconds, 2) if processed and seconds else None,
        "processes": world, "devices": sorted({r["device"] for r in ranks}),
        "skipped_files": skipped_files,
    }
    thumbs = [out / "thumbs" / f"{r['id']}.png" for r in ok if (out / "thumbs" / f"{r['id']}.png").exists()]
    summary["overview"] = [p.name for p in overview(thumbs, out)]
    report = {"summary": summary, "studies": rows}
    save_json(report, out / "report.json")

    def _csv(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)

    write_atomic(out / "report.csv", _csv)
    return report
