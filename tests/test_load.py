"""Eight annotators at once against a real server on loopback (`liver-tumor bench load`, bounded): nothing lost,
the index stays valid, no study goes to two clients within the serve window, memory stays bounded."""

from __future__ import annotations

import json

from .conftest import run_cli


def test_eight_concurrent_annotators(tmp_path):
    # at 3 mm (the sample studies' own spacing) each inference takes a fraction of a second: the test is about
    # concurrency; `liver-tumor bench load` at the app's defaults is in docs/reliability.md. 64 requests: two rounds
    # of next sample, infer, info and save for each client
    proc = run_cli("bench", "load", "--clients", "8", "--requests", "64", "--window", "3", "--out", tmp_path,
                   "--conf", "spacing", "3", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["errors"] == [] and result["requests"] == 64
    assert result["labels_saved"] >= 8 and result["labels_lost"] == [] and result["labels_not_in_index"] == []
    assert result["index_images"] == 12  # MONAI Label's LocalDatastore opens the index after the run
    assert result["grants"] >= 8 and result["window_violations"] == []
    assert all(result["latency"][op]["count"] > 0 for op in ("next", "infer", "info", "save"))
    assert result["inference_per_s"]["one_at_a_time"] > 0 and result["inference_per_s"]["under_load"] > 0
    # requests queue: eight clients asking for inference at once do not take eight inferences' memory
    rss = result["server_rss_mb"]
    assert rss["under_load"] < 1.3 * rss["one_inference_at_a_time"], rss
    assert (tmp_path / "load.json").exists() and (tmp_path / "load.png").stat().st_size > 10_000
