"""`liver-tumor bench startup`: a server as `make serve` starts it (the demo model, MONAI Label's start-up scoring
on), measured right after it answers: the first next-sample of each strategy while the background scorer works,
`/infer` then against the same inferences on a server with no scoring (idle), and how far scoring got."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any, Callable

import requests

from .server import ServerProcess, fresh_copies

STRATEGIES = ("mc_dropout", "uncertain_diverse", "cold_start", "random")


def _timed(call: Callable[[], requests.Response]) -> tuple[requests.Response, float]:
    start = time.perf_counter()
    r = call()
    return r, round(time.perf_counter() - start, 3)


def _server(out: Path, name: str, sample: Path, app: Path, conf: dict[str, str], scoring: bool) -> ServerProcess:
    studies, app_dir = fresh_copies(out / name, sample, app)
    return ServerProcess(app_dir, studies, conf, out / name / "server.log",
                         env={"MONAI_LABEL_AUTO_UPDATE_SCORING": "true" if scoring else "false"})


def _inferences(url: str, studies: list[str], rounds: int) -> list[dict[str, Any]]:
    rows = []
    for _ in range(rounds):
        for study in studies:
            activity = requests.get(f"{url}/info/", timeout=60).json()["background_scoring"]["activity"]
            r, seconds = _timed(lambda s=study: requests.post(f"{url}/infer/liver_tumor?image={s}&output=json",
                                                              timeout=600))
            r.raise_for_status()
            rows.append({"study": study, "seconds": seconds, "scoring_before": activity})
    return rows


def run(out: Path, sample: Path, app: Path, conf: dict[str, str], studies: list[str], rounds: int = 2,
        progress: Callable[[str], None] = print) -> dict[str, Any]:
    """studies: unlabelled studies of `sample` to infer (rounds times each) on both servers."""
    result: dict[str, Any] = {"conf": conf, "studies": studies, "rounds": rounds}
    started = time.time()
    with _server(out, "fresh", sample, app, conf, scoring=True) as server:
        result["start_s"] = round(time.time() - started, 1)
        first = {}
        for strategy in STRATEGIES:
            r, seconds = _timed(lambda s=strategy: requests.post(f"{server.url}/activelearning/{s}",
                                                                 json={"client_id": s}, timeout=600))
            why = r.json().get("why", {}) if r.status_code == 200 else {"error": r.text[:300]}
            first[strategy] = {"seconds": seconds, "status": r.status_code,
                               "ranked_by": sorted({p.get("ranked_by", strategy) for p in why.get("picks", [])}),
                               "fallback": why.get("fallback")}
            progress(f"startup: first {strategy} in {seconds} s")
        result["first_next_sample"] = first
        result["busy_infer"] = _inferences(server.url, studies, rounds)
        progress(f"startup: /infer beside the scorer {[r['seconds'] for r in result['busy_infer']]}")
        result["scoring_after"] = requests.get(f"{server.url}/info/", timeout=60).json()["background_scoring"]
        result["scoring_after"]["seconds_since_start"] = round(time.time() - started, 1)
    with _server(out, "idle", sample, app, conf, scoring=False) as server:
        result["idle_infer"] = _inferences(server.url, studies, rounds)
        progress(f"startup: /infer on an idle server {[r['seconds'] for r in result['idle_infer']]}")
    busy = statistics.median(r["seconds"] for r in result["busy_infer"])
    idle = statistics.median(r["seconds"] for r in result["idle_infer"])
    result["infer_median_s"] = {"beside_scoring": busy, "idle": idle, "ratio": round(busy / idle, 3)}
    return result


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    first = result["first_next_sample"]
    a.bar(list(first), [v["seconds"] for v in first.values()], color="tab:blue")
    a.axhline(2.0, color="grey", ls="--", lw=0.8)
    a.set_ylabel("seconds")
    a.set_title("first next-sample after start")
    a.tick_params(axis="x", labelrotation=15)
    busy, idle = result["busy_infer"], result["idle_infer"]
    b.plot(range(len(busy)), [r["seconds"] for r in busy], "o-", label="fresh server, scoring in the background")
    b.plot(range(len(idle)), [r["seconds"] for r in idle], "s-", label="idle server (no scoring)")
    b.set_xlabel("inference")
    b.set_ylabel("seconds")
    ratio = result["infer_median_s"]["ratio"]
    b.set_title(f"/infer: median {ratio}x idle")
    b.set_ylim(bottom=0)
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
