"""Vector search at scale: the embedded backend over N synthetic products (default 1M), with the raw
FAISS graph measured side by side in the same run.

    python bench/scale_bench.py [--n 1000000] [--dim 384] [--queries 200] [--record]

Vectors: unit vectors drawn around 4,096 random centres with noise of norm ``NOISE``
(clustered like real embeddings, so ANN recall means something). Reports build time, RAM (RSS growth) and disk bytes per product, single
query (k=10) p50/p99 through :class:`prodsearch.index.backend.FaissBackend` and through the bare
``faiss.IndexHNSWFlat.search`` on the same graph (the wrapper's overhead as a ratio), recall@10
against exact search, and filtered recall@10 at 1%, 10% and 50% selectivity (exact over the
allowed products as the reference).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import dir_size_mb, pct, record, table  # noqa: E402

#: Norm of the noise around a centre (the centres have norm 1): neighbours spread over clusters.
NOISE = 1.0


def rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def clustered(
    rng: np.random.Generator, n: int, dim: int, centres: np.ndarray, chunk: int = 100_000
) -> np.ndarray:
    out = np.empty((n, dim), np.float32)
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        v = centres[rng.integers(len(centres), size=m)] + NOISE * rng.standard_normal((m, dim)).astype(
            np.float32
        ) / np.sqrt(dim)
        out[s : s + m] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


def recall(got: list, ref: list) -> float:
    hits = sum(len(set(g.iids.tolist()) & set(r.iids.tolist())) for g, r in zip(got, ref, strict=True))
    return hits / max(1, sum(len(r) for r in ref))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--hnsw-m", type=int, default=32)
    ap.add_argument("--ef-construction", type=int, default=80)
    ap.add_argument("--record", action="store_true", help="append the table to docs/benchmarks.md")
    args = ap.parse_args()

    import faiss

    from prodsearch.index.backend import FaissBackend
    from prodsearch.index.vector import exact_search

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((4096, args.dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    vecs = clustered(rng, args.n, args.dim, centres)
    iids = np.arange(args.n, dtype=np.int64)
    queries = clustered(rng, args.queries, args.dim, centres)

    rss0 = rss_mb()
    t = time.perf_counter()
    backend = FaissBackend(args.dim, kind="hnsw", hnsw_m=args.hnsw_m, ef_construction=args.ef_construction)
    backend.upsert(iids, vecs)
    backend.compact()  # builds the HNSW graph of the main segment
    build_s = time.perf_counter() - t
    ram_b = (rss_mb() - rss0) * 2**20 / args.n  # the input array existed before and after: not counted
    del vecs  # the backend holds its own copy
    root = Path(tempfile.mkdtemp(prefix="scale-bench-"))
    try:
        backend.save(root, "text", meta={"applied_seq": 0})
        disk_b = dir_size_mb(root) * 2**20 / args.n
    finally:
        shutil.rmtree(root, ignore_errors=True)

    main_index = backend.main
    graph = main_index._graph
    all_vecs = main_index._vecs[: len(main_index)]
    ref = exact_search(all_vecs, main_index._ids[: len(main_index)], queries, 10)

    wrap_t, raw_t, got = [], [], []
    for q in queries:
        t = time.perf_counter()
        got.append(backend.search(q[None], 10)[0])
        wrap_t.append(time.perf_counter() - t)
        t = time.perf_counter()
        graph.search(q[None], 10)
        raw_t.append(time.perf_counter() - t)
    raw_labels = graph.search(queries, 10)[1]
    raw_recall = np.mean(
        [
            len(set(main_index._ids[lab[lab >= 0]].tolist()) & set(r.iids.tolist())) / 10
            for lab, r in zip(raw_labels, ref, strict=True)
        ]
    )
    rows = [
        [
            "embedded backend",
            f"{pct(wrap_t)['p50']:.2f}",
            f"{pct(wrap_t)['p99']:.2f}",
            f"{recall(got, ref):.3f}",
        ],
        [
            "raw faiss.IndexHNSWFlat",
            f"{pct(raw_t)['p50']:.2f}",
            f"{pct(raw_t)['p99']:.2f}",
            f"{raw_recall:.3f}",
        ],
    ]
    for share in (0.01, 0.10, 0.50):
        allowed = np.sort(rng.choice(args.n, size=int(share * args.n), replace=False)).astype(np.int64)
        sub = exact_search(all_vecs[allowed], allowed, queries[:50], 10)
        ts, res = [], []
        for q in queries[:50]:
            t = time.perf_counter()
            res.append(backend.search(q[None], 10, allowed=allowed)[0])
            ts.append(time.perf_counter() - t)
        rows.append(
            [
                f"embedded, filter {share:.0%}",
                f"{pct(ts)['p50']:.2f}",
                f"{pct(ts)['p99']:.2f}",
                f"{recall(res, sub):.3f}",
            ]
        )
    body = table(rows, ["search (k=10, 1 query)", "p50 ms", "p99 ms", "recall@10"])
    head = (
        f"{args.n:,} products x {args.dim} dims (clustered synthetic), HNSW M={args.hnsw_m} "
        f"efConstruction={args.ef_construction} efSearch={main_index.ef_search}, faiss "
        f"{faiss.__version__}, {faiss.omp_get_max_threads()} threads. Build {build_s:.0f} s; RAM "
        f"{ram_b:.0f} bytes/product (RSS growth: raw float32 copy + graph); disk {disk_b:.0f} bytes/product. "
        f"Wrapper overhead p50: {pct(wrap_t)['p50'] / pct(raw_t)['p50']:.2f}x raw FAISS."
    )
    print(head)
    print(body)
    if args.record:
        record(
            "Vector search at scale (embedded backend vs raw FAISS)",
            "nice -n 10 python bench/scale_bench.py " + " ".join(sys.argv[1:]),
            "Machine shared with other jobs (2-core AMD EPYC, 24 GiB, no GPU). " + head + "\n\n" + body,
        )


if __name__ == "__main__":
    main()
