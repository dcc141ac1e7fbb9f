"""The embedded FAISS backend against Milvus Lite on the same vectors, side by side in one run.

    python bench/milvus_bench.py [--n 100000] [--dim 256] [--queries 200] [--record]

Synthetic unit vectors (1,000 Gaussian clusters) with two attributes: ``grp`` (10 values: a 10% filter) and ``cat``
(100 values: a 1% filter). For each backend: insert time, then single-query (k=10) latency
p50/p99 and recall@10 against exact brute force, without a filter and with each filter (the
embedded backend gets the filter resolved to allowed iids by the engine's attribute table, as in
the engine; Milvus gets the typed filter as a Milvus expression). Both use HNSW M=32, efC as given,
ef=128.

Milvus Lite is an in-process Python reimplementation of Milvus on FAISS behind the same client
API, not Milvus's own engine: its figures prove the client code and the filter translation, not
what a Milvus cluster does.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import pct, record, table  # noqa: E402

MACHINE_NOTE = "2-core AMD EPYC, 24 GiB, no GPU, shared with other jobs"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--record", action="store_true", help="append the table to docs/benchmarks.md")
    args = ap.parse_args()

    from prodsearch.index.backend import FaissBackend
    from prodsearch.index.filters import evaluate, parse_filter
    from prodsearch.index.milvus import MilvusBackend
    from prodsearch.index.vector import exact_search

    rng = np.random.default_rng(0)
    # clustered, as product embeddings are (uniform random vectors in 256-d make every point nearly
    # equidistant from a query, so "recall@10" would rank near-ties): 1,000 centres, cos ~0.86 to theirs
    centres = rng.normal(size=(1000, args.dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    noise = rng.normal(size=(args.n, args.dim)).astype(np.float32) * (0.6 / np.sqrt(args.dim))
    vecs = centres[rng.integers(0, len(centres), args.n)] + noise
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    iids = np.arange(args.n, dtype=np.int64)
    grp = rng.integers(0, 10, args.n)
    cat = rng.integers(0, 100, args.n)
    attrs = [{"grp": f"g{g}", "cat": f"c{c}"} for g, c in zip(grp, cat, strict=True)]
    table_ = {
        "grp": np.array([a["grp"] for a in attrs], dtype=object),
        "cat": np.array([a["cat"] for a in attrs], dtype=object),
    }
    # queries near stored vectors (as real queries are near their products), not uniform noise
    picks = rng.choice(args.n, args.queries, replace=False)
    queries = vecs[picks] + 0.3 * rng.normal(size=(args.queries, args.dim)).astype(np.float32) / np.sqrt(
        args.dim
    )
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    filters = {"none": None, "10%": parse_filter({"grp": "g3"}), "1%": parse_filter({"cat": "c42"})}

    rows = []
    db = Path(tempfile.mkdtemp(prefix="prodsearch-milvus-bench-")) / "bench.db"
    t = time.perf_counter()
    emb = FaissBackend(args.dim, kind="hnsw", hnsw_m=32, ef_construction=args.ef_construction, ef_search=128)
    emb.upsert(iids, vecs)
    emb.compact()
    build = {"embedded (FAISS HNSW)": time.perf_counter() - t}
    print(f"embedded built in {build['embedded (FAISS HNSW)']:.1f}s", flush=True)
    t = time.perf_counter()
    mil = MilvusBackend(
        args.dim,
        vector_kind="bench",
        milvus={
            "uri": str(db),
            "collection": "bench",
            "index_type": "HNSW",
            "index_params": {"M": 32, "efConstruction": args.ef_construction},
            "search_params": {"ef": 128},
            "attribute_fields": ["cat", "grp"],
            "timeout_s": 900.0,  # Milvus Lite indexes 100k vectors inside the first calls
        },
        embedder={"name": "synthetic", "hash": "0" * 16},
    )
    mil.upsert(iids, vecs, attributes=attrs)
    mil.compact()
    mil.search(queries[0], 10)  # the first search builds Milvus Lite's index
    build["Milvus Lite HNSW"] = time.perf_counter() - t
    print(f"Milvus Lite built in {build['Milvus Lite HNSW']:.1f}s", flush=True)

    for fname, flt in filters.items():
        allowed = iids[evaluate(flt, table_)] if flt is not None else None
        truth = exact_search(
            vecs if allowed is None else vecs[allowed], iids if allowed is None else allowed, queries, 10
        )
        for name, run in (
            ("embedded (FAISS HNSW)", lambda q, a=allowed: emb.search(q, 10, allowed=a)[0]),
            ("Milvus Lite HNSW", lambda q, f=flt: mil.search(q, 10, filter=f)[0]),
        ):
            lat, recall = [], []
            for q, want in zip(queries, truth, strict=True):
                t = time.perf_counter()
                got = run(q)
                lat.append(time.perf_counter() - t)
                recall.append(len(set(got.iids.tolist()) & set(want.iids.tolist())) / max(1, len(want)))
            p = pct(lat)
            rows.append(
                [
                    name,
                    fname,
                    f"{p['p50']:.2f}",
                    f"{p['p99']:.2f}",
                    f"{np.mean(recall):.3f}",
                    f"{build[name]:.1f}",
                ]
            )
            print(rows[-1], flush=True)
    out = table(rows, ["backend", "filter", "p50 ms", "p99 ms", "recall@10", "insert+index s"])
    print(out)
    if args.record:
        body = (
            f"Machine note: {MACHINE_NOTE}. {args.n:,} synthetic unit vectors x {args.dim} (1,000 Gaussian "
            f"clusters, cos ~0.86 to their centre), {args.queries} queries near stored vectors, "
            f"one at a time (k=10), HNSW M=32 efC={args.ef_construction} ef=128 in both; filters: 10% (`grp`), 1% (`cat`). "
            "Milvus Lite is an in-process Python reimplementation of Milvus on FAISS behind the same "
            "client API: its figures prove the client code and the filter translation, not a Milvus "
            "cluster's speed.\n\n" + out
        )
        cmd = "python bench/milvus_bench.py " + " ".join(sys.argv[1:])
        record("Vector backends: embedded FAISS vs Milvus Lite (issue 10)", cmd, body)


if __name__ == "__main__":
    main()
