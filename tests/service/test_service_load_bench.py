"""bench/load_bench.py runs end to end against the tiny index (a real uvicorn subprocess on loopback)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _load_bench():
    spec = importlib.util.spec_from_file_location("load_bench", ROOT / "bench" / "load_bench.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_load_bench_reports_latency_errors_and_memory(tiny_index, tmp_path, capsys):
    out = tmp_path / "bench.json"
    res = _load_bench().main(
        [
            "--index",
            str(tiny_index),
            "--seconds",
            "0.5",
            "--concurrency",
            "2",
            "--inproc-queries",
            "20",
            "--pythonpath",
            str(ROOT / "tests"),
            "--embedder",
            "fakes:fake_embedder",
            "--json",
            str(out),
        ]
    )
    assert json.loads(out.read_text()) == json.loads(json.dumps(res))
    assert [(p["kind"], p["concurrency"]) for p in res["phases"]] == [("text", 2), ("image", 2)]
    for p in res["phases"]:
        assert p["requests"] > 0 and p["errors"] == 0, p["error_samples"]
        assert 0 < p["p50"] <= p["p95"] <= p["p99"] and p["server_mean_ms"] > 0
        assert 50 < p["rss_start_mb"] <= p["rss_max_mb"]
    assert set(res["in_process"]) == {"text", "image"}
    assert res["queries"]["image"] == 12  # every tiny-catalog photo
    table = capsys.readouterr().out
    assert "HTTP p50 ms" in table and "in-proc p50 ms" in table
