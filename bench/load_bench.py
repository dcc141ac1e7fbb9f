"""Load-test the HTTP service on loopback, with in-process engine latency side by side.

    python bench/load_bench.py --index INDEX [--seconds 30] [--concurrency 1,4] [--record]

Starts ``prodsearch serve`` (uvicorn, one process) on 127.0.0.1 in a subprocess, then for each
query kind (text, image) and each concurrency runs an async httpx client for ``--seconds``:
text queries are catalog titles and attribute-value pairs, image queries are catalog photos sent
as multipart uploads. Reports requests, errors, QPS, p50/p95/p99 latency seen by the client, the
mean time the server spent per request (from its /metrics, so client cost is separated), and the server's RSS
sampled every second (start of load, end, max), so a leak shows as a rising end value. The same
queries are then timed in-process (``engine.search``, serially) so the HTTP overhead is visible.

For an index built with test-only encoders, ``--pythonpath tests --embedder fakes:fake_embedder``
uses them in both processes.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).parent))
from common import ROOT, pct, record, table  # noqa: E402

LAUNCH = """
import importlib, sys
index, host, port, factory, *imports = sys.argv[1:]
for m in imports:
    importlib.import_module(m)
embedder = None
if factory:
    mod, _, fn = factory.partition(":")
    embedder = getattr(importlib.import_module(mod), fn)()
from prodsearch.service.app import run_server
run_server(index, host=host, port=int(port), embedder=embedder)
"""


def load_factory(spec: str | None):
    """``module:function`` -> the embedder it returns (None when no spec)."""
    if not spec:
        return None
    mod, _, fn = spec.partition(":")
    return getattr(importlib.import_module(mod), fn)()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    index: Path, port: int, factory: str | None, imports: list[str], env: dict[str, str], timeout: float
) -> subprocess.Popen:
    argv = [sys.executable, "-c", LAUNCH, str(index), "127.0.0.1", str(port), factory or "", *imports]
    proc = subprocess.Popen(argv, env=env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with code {proc.returncode} before answering /healthz")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.terminate()
    raise SystemExit(f"server did not answer /healthz within {timeout:.0f} s")


def server_seconds(base: str) -> tuple[float, float]:
    """(total seconds, requests) the server spent in POST /search so far, from its /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    total = count = 0.0
    for fam in text_string_to_metric_families(httpx.get(f"{base}/metrics", timeout=10).text):
        for smp in fam.samples:
            if smp.labels.get("route") == "/search" and smp.labels.get("method") == "POST":
                if smp.name == "prodsearch_http_request_seconds_sum":
                    total += smp.value
                elif smp.name == "prodsearch_http_request_seconds_count":
                    count += smp.value
    return total, count


def make_queries(index: Path, n: int, seed: int) -> tuple[list[str], list[bytes]]:
    """Text queries (titles and pairs of attribute values) and photo bytes of sampled products."""
    from prodsearch.search.engine import Engine

    rng = random.Random(seed)
    with Engine.open(index) as engine:
        products = list(engine.store.iter_products())
    sample = rng.sample(products, min(n, len(products)))
    texts = []
    for p in sample:
        texts.append(p.title)
        values = [v for v in p.attributes.values() if v and not v.replace(".", "").isdigit()]
        if len(values) >= 2:
            texts.append(" ".join(rng.sample(values, 2)))
    photos = [
        Path(p.image_path).read_bytes() for p in sample if p.image_path and Path(p.image_path).is_file()
    ]
    return texts, photos


async def load_phase(
    base: str, kind: str, queries: list, concurrency: int, seconds: float, k: int, pid: int
) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    rss: list[float] = []
    proc = psutil.Process(pid)
    deadline = time.perf_counter() + seconds
    counter = iter(range(10**12))

    async def worker(client: httpx.AsyncClient) -> None:
        while time.perf_counter() < deadline:
            q = queries[next(counter) % len(queries)]
            t = time.perf_counter()
            try:
                if kind == "text":
                    r = await client.post("/search", json={"text": q, "k": k})
                else:
                    r = await client.post(
                        "/search", files={"image": ("q.jpg", q, "image/jpeg")}, data={"k": str(k)}
                    )
                ok = r.status_code == 200
                if not ok:
                    errors.append(f"{r.status_code}: {r.text[:200]}")
            except httpx.HTTPError as err:
                ok = False
                errors.append(f"{type(err).__name__}: {err}")
            if ok:
                latencies.append(time.perf_counter() - t)

    async def sampler() -> None:
        while time.perf_counter() < deadline:
            rss.append(proc.memory_info().rss / 2**20)
            await asyncio.sleep(1.0)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
        t0 = time.perf_counter()
        await asyncio.gather(sampler(), *(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    rss.append(proc.memory_info().rss / 2**20)
    return {
        "kind": kind,
        "concurrency": concurrency,
        "requests": len(latencies) + len(errors),
        "errors": len(errors),
        "error_samples": errors[:3],
        "qps": len(latencies) / wall,
        **(pct(latencies) if latencies else {"p50": float("nan"), "p95": float("nan"), "p99": float("nan")}),
        "rss_start_mb": rss[0],
        "rss_end_mb": rss[-1],
        "rss_max_mb": max(rss),
    }


def in_process(
    index: Path, texts: list[str], photos: list[bytes], n: int, k: int, embedder
) -> dict[str, dict]:
    """Serial ``engine.search`` latency on the same queries, measured after the server stopped."""
    from prodsearch.search.engine import Engine

    out = {}
    with Engine.open(index, embedder=embedder, lazy_model=False) as engine:
        for kind, queries in (("text", texts), ("image", photos)):
            if not queries:
                continue
            run = (
                (lambda q: engine.search(q, k=k))
                if kind == "text"
                else (lambda q: engine.search(image=q, k=k))
            )
            for q in queries[:5]:
                run(q)  # warm-up
            lat = []
            for i in range(n):
                t = time.perf_counter()
                run(queries[i % len(queries)])
                lat.append(time.perf_counter() - t)
            out[kind] = pct(lat)
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--seconds", type=float, default=30.0, help="duration of each load phase")
    ap.add_argument("--concurrency", default="1,4", help="comma-separated client concurrencies")
    ap.add_argument("--kinds", default="text,image", help="query kinds to run: text, image")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--sample", type=int, default=200, help="products sampled for queries")
    ap.add_argument("--inproc-queries", type=int, default=200)
    ap.add_argument("--pythonpath", action="append", default=[], help="extra sys.path entry (both processes)")
    ap.add_argument("--import", dest="imports", action="append", default=[], help="module to import first")
    ap.add_argument("--embedder", default=None, help="module:function returning the embedder (test indexes)")
    ap.add_argument("--startup-timeout", type=float, default=300.0)
    ap.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    ap.add_argument("--record", action="store_true", help="append the table to docs/benchmarks.md")
    args = ap.parse_args(argv)

    extra = [str(Path(p).resolve()) for p in args.pythonpath]
    sys.path[:0] = extra
    for m in args.imports:
        importlib.import_module(m)
    env = dict(os.environ, PRODSEARCH_LOG_LEVEL="warning")
    env["PYTHONPATH"] = os.pathsep.join([*extra, str(ROOT / "src"), env.get("PYTHONPATH", "")])

    texts, photos = make_queries(args.index, args.sample, seed=0)
    port = free_port()
    server = start_server(args.index, port, args.embedder, args.imports, env, args.startup_timeout)
    base = f"http://127.0.0.1:{port}"
    phases = []
    try:
        for kind in args.kinds.split(","):
            queries = texts if kind == "text" else photos
            if not queries:
                continue
            for c in (int(x) for x in args.concurrency.split(",")):
                asyncio.run(
                    load_phase(base, kind, queries[:20], 1, min(1.0, args.seconds), args.k, server.pid)
                )  # warm-up
                s0, n0 = server_seconds(base)
                phase = asyncio.run(load_phase(base, kind, queries, c, args.seconds, args.k, server.pid))
                s1, n1 = server_seconds(base)
                phase["server_mean_ms"] = 1000 * (s1 - s0) / max(n1 - n0, 1)
                phases.append(phase)
    finally:
        server.terminate()
        server.wait(30)
    inproc = in_process(args.index, texts, photos, args.inproc_queries, args.k, load_factory(args.embedder))

    rows = [
        [
            p["kind"],
            p["concurrency"],
            p["requests"],
            p["errors"],
            f"{p['qps']:.1f}",
            f"{p['p50']:.1f}",
            f"{p['p95']:.1f}",
            f"{p['p99']:.1f}",
            f"{p['server_mean_ms']:.1f}",
            f"{inproc.get(p['kind'], {}).get('p50', float('nan')):.1f}",
            f"{inproc.get(p['kind'], {}).get('p95', float('nan')):.1f}",
            f"{p['rss_start_mb']:.0f} / {p['rss_end_mb']:.0f} / {p['rss_max_mb']:.0f}",
        ]
        for p in phases
    ]
    header = [
        "query",
        "clients",
        "requests",
        "errors",
        "QPS",
        "HTTP p50 ms",
        "HTTP p95 ms",
        "HTTP p99 ms",
        "server mean ms",
        "in-proc p50 ms",
        "in-proc p95 ms",
        "server RSS MiB start/end/max",
    ]
    text = table(rows, header)
    print(text)
    for p in phases:
        for e in p["error_samples"]:
            print(f"error sample ({p['kind']}, c={p['concurrency']}): {e}")
    result = {"phases": phases, "in_process": inproc, "queries": {"text": len(texts), "image": len(photos)}}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    if args.record:
        cmd = "python bench/load_bench.py " + " ".join(argv if argv is not None else sys.argv[1:])
        record(
            "HTTP load (loopback)",
            cmd,
            f"Index: `{args.index}` ({len(texts)} text / {len(photos)} image queries, "
            f"k={args.k}, {args.seconds:g} s per row)\n\n{text}",
        )
    return result


if __name__ == "__main__":
    main()
