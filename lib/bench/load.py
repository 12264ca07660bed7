"""`liver-tumor bench load`: concurrent annotators against one server, over its REST API on loopback.

First every unlabelled study is inferred once, one at a time: the inference throughput and memory of an idle
server. Then each client, in its own thread with its own id, repeats: ask `/activelearning/random` for a study, run
`/infer` on it, read `/info`, save a label for it (under the client's own tag, so that the pool of unlabelled
studies does not run out). Reported: per operation the latency (p50, p95, max) with inferences running
concurrently, and the inference throughput under load against one at a time. Afterwards: every label whose save
was acknowledged reads back byte for byte, the datastore's index is valid JSON that MONAI Label's own
LocalDatastore opens, no study went to two clients within the serve window, and the server's memory stayed
bounded (inferences take turns per device: lib.serving.slots).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import threading
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import nibabel as nib
import numpy as np
import requests

OPERATIONS = ("next", "infer", "info", "save")


@dataclass
class LoadConfig:
    clients: int = 8
    requests: int = 240  # in all, shared by the clients
    window_s: float = 3.0  # the server's serve_window_s
    timeout_s: float = 600.0  # the whole run


def _server_rss_mb(pid: int) -> float:
    """Resident memory of the server and its children (training, scoring) in MB, from /proc."""
    total = 0.0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            pass
    return total


class Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.timeline: dict[str, list[tuple[float, float]]] = defaultdict(list)  # (time answered, latency)
        self.errors: list[str] = []
        self.grants: list[tuple[float, str, str]] = []  # (time, client, study)
        self.saved: dict[tuple[str, str], str] = {}  # (study, tag) -> sha256 of the last acknowledged upload
        self.count = 0

    def take(self, budget: int) -> bool:
        with self.lock:
            if self.count >= budget:
                return False
            self.count += 1
            return True

    def timed(self, op: str, call: Callable[[], requests.Response]) -> requests.Response | None:
        start = time.perf_counter()
        try:
            r = call()
        except requests.RequestException as e:
            with self.lock:
                self.errors.append(f"{op}: {type(e).__name__}: {e}")
            return None
        with self.lock:
            self.latencies[op].append(time.perf_counter() - start)
            self.timeline[op].append((time.time(), self.latencies[op][-1]))
            if r.status_code != 200:
                self.errors.append(f"{op}: {r.status_code} {r.text[:200]}")
        return r if r.status_code == 200 else None


def _label_bytes(shape: tuple[int, ...], affine: np.ndarray, client: int, n: int) -> bytes:
    """A label unique to this client and round: a box of liver with a tumour, placed by both."""
    label = np.zeros(shape, np.uint8)
    x = (client * 7 + n * 3) % max(1, shape[0] - 12)
    label[x:x + 10, 5:15, 2:6] = 1
    label[x + 2:x + 4, 7:9, 3:4] = 2
    return gzip.compress(nib.Nifti1Image(label, affine).to_bytes(), compresslevel=1)


def _client(url: str, index: int, cfg: LoadConfig, rec: Recorder, studies: Path, deadline: float) -> None:
    session = requests.Session()
    client_id, tag = f"annotator-{index}", f"c{index}"
    n = 0
    while time.time() < deadline and rec.take(cfg.requests):
        r = rec.timed("next", lambda: session.post(f"{url}/activelearning/random",
                                                    json={"client_id": client_id}, timeout=300))
        study = r.json().get("id") if r is not None else None
        if not study:
            time.sleep(0.5)  # nothing free for this client now: every study is held by another
            continue
        with rec.lock:
            rec.grants.append((time.time(), client_id, study))
        if not rec.take(cfg.requests):
            break
        rec.timed("infer", lambda: session.post(f"{url}/infer/liver_tumor?image={study}&output=json", timeout=300))
        if not rec.take(cfg.requests):
            break
        rec.timed("info", lambda: session.get(f"{url}/info/", timeout=300))
        if not rec.take(cfg.requests):
            break
        image = nib.load(str(studies / f"{study}.nii.gz"))
        content = _label_bytes(image.shape, image.affine, index, n)
        n += 1
        r = rec.timed("save", lambda: session.put(f"{url}/datastore/label?image={study}&tag={tag}",
                                                  files={"label": ("label.nii.gz", content)}, timeout=300))
        if r is not None:
            with rec.lock:
                rec.saved[(study, tag)] = hashlib.sha256(content).hexdigest()


def _window_violations(grants: list[tuple[float, str, str]], window_s: float) -> list[str]:
    """Pairs of grants of one study to two clients closer in time than the window (0.5 s of slack for the
    time between the server's answer and this client recording it)."""
    found = []
    by_study: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for t, client, study in sorted(grants):
        for t0, c0 in by_study[study]:
            if c0 != client and t - t0 < window_s - 0.5:
                found.append(f"{study}: {c0} then {client} after {t - t0:.2f} s")
        by_study[study].append((t, client))
    return found


def _stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {"count": 0}
    a = np.asarray(values)
    return {"count": len(values), "p50_s": round(float(np.median(a)), 3),
            "p95_s": round(float(np.percentile(a, 95)), 3), "max_s": round(float(a.max()), 3)}


def run(url: str, server_pid: int, studies: Path, cfg: LoadConfig,
        progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Drive the server at `url` (pid `server_pid`, datastore `studies`) with cfg.clients annotators."""
    rec = Recorder()
    peak = [_server_rss_mb(server_pid)]
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.1):
            peak[0] = max(peak[0], _server_rss_mb(server_pid))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    # first one inference at a time on every study the clients may get: the most memory one inference takes
    labelled = {p.name for p in (studies / "labels" / "final").glob("*.nii.gz")}
    single = []
    for image in sorted(p.name[:-7] for p in studies.glob("*.nii.gz") if p.name not in labelled):
        started = time.perf_counter()
        requests.post(f"{url}/infer/liver_tumor?image={image}&output=json", timeout=600).raise_for_status()
        single.append(time.perf_counter() - started)
    single_peak = peak[0]
    progress(f"load: one inference at a time: {len(single) / sum(single):.3f}/s, peak {single_peak:.0f} MB")
    start = time.time()
    deadline = start + cfg.timeout_s
    threads = [threading.Thread(target=_client, args=(url, i, cfg, rec, studies, deadline)) for i in range(cfg.clients)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        time.sleep(2)
        progress(f"load: {rec.count}/{cfg.requests} requests, {len(rec.errors)} errors")
    seconds = time.time() - start
    stop.set()
    watcher.join()

    lost = []
    for (study, tag), digest in rec.saved.items():
        r = requests.get(f"{url}/datastore/label?label={study}&tag={tag}", timeout=60)
        if r.status_code != 200 or hashlib.sha256(r.content).hexdigest() != digest:
            lost.append(f"{study}/{tag}: {r.status_code}")
    index = studies / "datastore_v2.json"
    json.loads(index.read_text())
    from monailabel.datastore.local import LocalDatastore

    reopened = LocalDatastore(str(studies), auto_reload=False)
    unindexed = [f"{s}/{t}" for s, t in rec.saved if not Path(reopened.get_label_uri(s, t) or "").is_file()]
    done = sum(len(v) for v in rec.latencies.values())
    one_at_a_time = len(single) / sum(single)
    under_load = len(rec.latencies["infer"]) / seconds if seconds else 0.0
    return {
        "config": asdict(cfg), "seconds": round(seconds, 1), "requests": done,
        "throughput_per_s": round(done / seconds, 2) if seconds else None,
        "latency": {op: _stats(rec.latencies[op]) for op in OPERATIONS},
        "inference_per_s": {"one_at_a_time": round(one_at_a_time, 3), "under_load": round(under_load, 3),
                            "ratio": round(under_load / one_at_a_time, 3)},
        "worst_latency_s": round(max((max(v) for v in rec.latencies.values() if v), default=0.0), 3),
        "errors": rec.errors, "labels_saved": len(rec.saved), "labels_lost": lost,
        "index_images": len(reopened.list_images()), "labels_not_in_index": unindexed,
        "window_violations": _window_violations(rec.grants, cfg.window_s), "grants": len(rec.grants),
        "server_rss_mb": {"one_inference_at_a_time": round(single_peak), "under_load": round(peak[0])},
        "timeline": {op: [[round(t - start, 2), round(v, 3)] for t, v in rec.timeline[op]] for op in OPERATIONS},
    }


def plot(result: dict[str, Any], path: Path, title: str = "") -> None:
    """Each request's latency against the time it was answered, per operation (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    for op, points in result["timeline"].items():
        if points:
            t, v = zip(*points)
            s = result["latency"][op]
            ax.scatter(t, v, s=10, label=f"{op}: p50 {s['p50_s']} s, p95 {s['p95_s']} s, max {s['max_s']} s")
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_yscale("log")
    ax.set_xlabel("seconds into the run")
    ax.set_ylabel("latency (s)")
    rate = result["inference_per_s"]
    ax.set_title(title or f"{result['config']['clients']} clients; inferences/s under load {rate['under_load']} "
                          f"vs one at a time {rate['one_at_a_time']}")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
