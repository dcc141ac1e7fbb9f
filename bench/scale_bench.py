"""Vector search at scale: the embedded backend over N synthetic products (default 1M), uncompressed
and compressed (IVF-PQ), each with the raw FAISS index of the same kind measured side by side in the
same run.

    python bench/scale_bench.py [--n 1000000] [--dim 384] [--queries 200] [--plain hnsw|flat]
                                [--compressed ivfpq|none] [--record]

Vectors: unit vectors drawn around 4,096 random centres with noise of norm ``NOISE`` (clustered like
real embeddings, so ANN recall means something). For each index kind the script builds a
:class:`prodsearch.index.backend.FaissBackend` as ``prodsearch index`` does (upsert + compaction),
saves it, then loads it back as a served index would and reports: build time; RAM as the RSS growth
of loading the saved index and running the queries, split into anonymous memory (owned by the
process) and file-backed pages (the memory-mapped float32 vectors of a compressed index: page cache
the kernel may reclaim); disk bytes per product; single-query (k=10) p50/p99 through the backend and
through the bare FAISS index of the same kind (``IndexHNSWFlat``; for IVF-PQ an ``IndexRefineFlat``
over the same trained ``IndexIVFPQ``, re-ranking as many candidates), so the wrapper's overhead is a
ratio; recall@10 against exact search, and filtered recall@10 at 1%, 10% and 50% selectivity (exact
over the allowed products as the reference). ``--plain flat`` measures the uncompressed side with the
exact index (an HNSW build of 1M x 384 takes most of an hour on 2 cores).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import dir_size_mb, pct, record_run, table  # noqa: E402

#: Norm of the noise around a centre (the centres have norm 1): neighbours spread over clusters.
NOISE = 1.0
SHARES = (0.01, 0.10, 0.50)
#: Queries per filtered measurement.
FILTER_QUERIES = 50


def rss_mb() -> dict[str, float]:
    """Resident memory of this process in MiB: ``anon`` (owned) and ``file`` (mapped file pages)."""
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(("RssAnon:", "RssFile:")):
                out[line[3:7].lower()] = int(line.split()[1]) / 1024
    return out


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


def raw_index(main: Any, k: int) -> tuple[Any, str, Any]:
    """The bare FAISS index of the same kind as ``main``'s, answering with labels == rows
    (a freshly built index): (index, description, object to keep alive) or (None, reason, None)."""
    import faiss

    graph = main._graph
    if graph is None:
        return None, "exact numpy (no FAISS structure)", None
    n = len(main)
    assert np.array_equal(main._label_row, np.arange(n)), "labels of a fresh build are its rows"
    if not main.compressed:
        return graph, "raw faiss.IndexHNSWFlat", None
    xb = np.ascontiguousarray(main._vecs[:n])  # IndexRefineFlat keeps its own float32 copy in RAM
    refine = faiss.IndexRefineFlat(graph, faiss.swig_ptr(xb))
    refine.k_factor = max(k, main.rerank) / k
    graph.nprobe = main.nprobe
    return refine, f"raw faiss.IndexRefineFlat(IndexIVFPQ), k_factor {refine.k_factor:g}", xb


def measure(
    label: str,
    params: dict[str, Any],
    vecs: np.ndarray,
    queries: np.ndarray,
    ref: list,
    filters: list[tuple[float, np.ndarray, list]],
    knobs: list[tuple[str, int]],
) -> tuple[list[list[str]], str]:
    from prodsearch.index.backend import FaissBackend

    n, dim = vecs.shape
    iids = np.arange(n, dtype=np.int64)
    t = time.perf_counter()
    backend = FaissBackend(dim, **params)
    backend.upsert(iids, vecs)
    backend.compact()  # builds the main segment's ANN structure
    build_s = time.perf_counter() - t
    root = Path(tempfile.mkdtemp(prefix="scale-bench-"))
    try:
        backend.save(root, "text", meta={"applied_seq": 0})
        disk_b = dir_size_mb(root) * 2**20 / n
        del backend
        gc.collect()
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # freed heap back to the OS: RSS growth is the load's
        rss0 = rss_mb()
        backend = FaissBackend.load(root, "text")  # as a served index opens it
        main = backend.main
        got = [backend.search(q[None], 10)[0] for q in queries]
        rss1 = rss_mb()
        ram = {key: (rss1[key] - rss0[key]) * 2**20 / n for key in rss0}
        raw, raw_name, keep = raw_index(main, 10)
        wrap_t, raw_t = [], []
        for q in queries:  # interleaved, so that load from other jobs hits both alike
            t = time.perf_counter()
            backend.search(q[None], 10)
            wrap_t.append(time.perf_counter() - t)
            if raw is not None:
                t = time.perf_counter()
                raw.search(q[None], 10)
                raw_t.append(time.perf_counter() - t)
        if raw is not None:
            labels = raw.search(queries, 10)[1]
            raw_recall = np.mean(
                [
                    len(set(lab[lab >= 0].tolist()) & set(r.iids.tolist())) / max(1, len(r))
                    for lab, r in zip(labels, ref, strict=True)
                ]
            )
        build = f"{build_s:.0f}"
        ram_s = f"{ram['anon']:.0f} + {ram['file']:.0f} mapped"
        rows = [
            [label, build, ram_s, f"{disk_b:.0f}"]
            + [f"{pct(wrap_t)['p50']:.2f}", f"{pct(wrap_t)['p99']:.2f}", f"{recall(got, ref):.3f}"]
        ]
        if raw_t:
            rows.append(
                [f"  {raw_name}", "", "", ""]
                + [f"{pct(raw_t)['p50']:.2f}", f"{pct(raw_t)['p99']:.2f}", f"{raw_recall:.3f}"]
            )
        if main.compressed and main._graph is not None:  # search-time knobs, on the same index
            defaults = {"nprobe": main.nprobe, "rerank": main.rerank}
            for knob, value in knobs:
                setattr(main, knob, value)
                main._graph.nprobe = main.nprobe
                raw.k_factor = max(10, main.rerank) / 10
                v_t, v_raw, v_got = [], [], []
                for q in queries:
                    t = time.perf_counter()
                    v_got.append(backend.search(q[None], 10)[0])
                    v_t.append(time.perf_counter() - t)
                    t = time.perf_counter()
                    raw.search(q[None], 10)
                    v_raw.append(time.perf_counter() - t)
                rows.append(
                    [f"  {label}, {knob}={value} (raw p50 {pct(v_raw)['p50']:.2f})", "", "", ""]
                    + [f"{pct(v_t)['p50']:.2f}", f"{pct(v_t)['p99']:.2f}", f"{recall(v_got, ref):.3f}"]
                )
            for knob, value in defaults.items():
                setattr(main, knob, value)
            main._graph.nprobe = main.nprobe
            raw.k_factor = max(10, main.rerank) / 10
        for share, allowed, sub_ref in filters:
            ts, res = [], []
            for q in queries[:FILTER_QUERIES]:
                t = time.perf_counter()
                res.append(backend.search(q[None], 10, allowed=allowed)[0])
                ts.append(time.perf_counter() - t)
            rows.append(
                [f"  {label}, filter {share:.0%}", "", "", ""]
                + [f"{pct(ts)['p50']:.2f}", f"{pct(ts)['p99']:.2f}", f"{recall(res, sub_ref):.3f}"]
            )
        p = main.params()
        how = (
            f"IVF-PQ nlist={main._graph.nlist} nprobe={p['nprobe']} {p['pq_m']} code bytes/vector, "
            f"re-rank of {p['rerank']} candidates from the memory-mapped float32 vectors"
            if main.compressed and main._graph is not None
            else f"HNSW M={p['hnsw_m']} efConstruction={p['ef_construction']} efSearch={p['ef_search']}"
            if main._graph is not None
            else "exact (flat)"
        )
        note = f"{label}: {how}"
        if raw_t:
            note += f"; wrapper overhead p50 {pct(wrap_t)['p50'] / pct(raw_t)['p50']:.2f}x raw FAISS"
        del raw, keep, backend, main
        gc.collect()
        return rows, note
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--plain", choices=("hnsw", "flat"), default="hnsw", help="uncompressed index kind")
    ap.add_argument("--compressed", choices=("ivfpq", "none"), default="ivfpq")
    ap.add_argument(
        "--knobs",
        default="nprobe=32,nprobe=128,rerank=100,rerank=400",
        help="further IVF-PQ search settings measured on the same index, one at a time (unfiltered)",
    )
    ap.add_argument("--hnsw-m", type=int, default=32)
    ap.add_argument("--ef-construction", type=int, default=80)
    ap.add_argument("--threads", type=int, default=1, help="FAISS/BLAS threads (build and search)")
    ap.add_argument("--record", action="store_true", help="append the table to docs/benchmarks.md")
    args = ap.parse_args()

    import faiss
    from threadpoolctl import threadpool_limits

    from prodsearch.index.vector import exact_search

    faiss.omp_set_num_threads(args.threads)
    threadpool_limits(args.threads)

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((4096, args.dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    vecs = clustered(rng, args.n, args.dim, centres)
    iids = np.arange(args.n, dtype=np.int64)
    queries = clustered(rng, args.queries, args.dim, centres)
    ref = exact_search(vecs, iids, queries, 10)
    filters = []
    for share in SHARES:
        allowed = np.sort(rng.choice(args.n, size=int(share * args.n), replace=False)).astype(np.int64)
        filters.append((share, allowed, exact_search(vecs[allowed], allowed, queries[:FILTER_QUERIES], 10)))

    systems: list[tuple[str, dict[str, Any]]] = [
        (
            f"embedded {args.plain}",
            {"kind": args.plain, "hnsw_m": args.hnsw_m, "ef_construction": args.ef_construction},
        )
    ]
    if args.compressed != "none":
        systems.append((f"embedded {args.compressed}", {"kind": args.compressed}))
    rows, notes = [], []
    for label, params in systems:
        knobs = [(k, int(v)) for k, v in (x.split("=") for x in args.knobs.split(",") if x)]
        r, note = measure(label, params, vecs, queries, ref, filters, knobs)
        rows += r
        notes.append(note)
        print(table(r, HEADER), flush=True)
    body = table(rows, HEADER)
    head = (
        f"{args.n:,} products x {args.dim} dims (clustered synthetic), faiss {faiss.__version__}, "
        f"{faiss.omp_get_max_threads()} threads, {args.queries} queries ({FILTER_QUERIES} filtered). "
        + "; ".join(notes)
        + ". RAM: RSS growth of loading the saved index and searching, anonymous + file-backed "
        "(mapped vector pages touched; reclaimable page cache), bytes/product."
    )
    print(head)
    print(body)
    if args.record:
        record_run(
            "Vector search at scale (embedded backend vs raw FAISS, compressed and not)",
            "scale_bench.py",
            None,
            "Run under `nice -n 10` on a machine shared with other jobs (2-core AMD EPYC, 24 GiB, no "
            "GPU). " + head + "\n\n" + body,
        )


HEADER = [
    "search (k=10, 1 query)",
    "build s",
    "RAM B/product",
    "disk B/product",
    "p50 ms",
    "p99 ms",
    "recall@10",
]

if __name__ == "__main__":
    main()
