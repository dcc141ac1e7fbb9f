"""Write latency against index size, and search latency while a compaction runs vs idle.

    python bench/write_bench.py [--sizes 300,5000,44000] [--writes 40] [--record]
    python bench/write_bench.py --sizes 1000000 --kinds text:384 --index-kind flat --record

Synthetic products (titles from a small vocabulary, 3 attributes) with random unit vectors at the
default dimensions (``--kinds``, default text 384 + image 1280; ``--index-kind`` as for
``prodsearch index``). For each size: one logged commit of the whole catalog
and a compaction (the build), then ``--writes`` single-product upserts through the one write path
(:class:`prodsearch.search.writer.IndexWriter`: SQLite commit of row + vectors + log entry, delta
segments, the attribute table a serving engine filters on; encoding and HTTP excluded), then vector (text kind, k=10) and lexical
search latency idle and while ``IndexWriter.compact`` runs in another thread.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import pct, record, table  # noqa: E402

WORDS = (
    "red blue green black white shirt dress shoe bag cotton linen leather summer winter slim casual".split()
)
DIMS = {"text": 384, "image": 1280}  # replaced by --kinds


def unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    v = rng.standard_normal((n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def products(rng: np.random.Generator, start: int, n: int) -> list:
    from prodsearch.catalog.schema import Product

    return [
        Product(
            id=f"s{i}",
            title=" ".join(rng.choice(WORDS, 4)) + f" {i}",
            attributes={
                "colour": str(rng.choice(WORDS[:5])),
                "kind": str(rng.choice(WORDS[5:9])),
                "year": str(2010 + i % 8),
            },
        )
        for i in range(start, start + n)
    ]


def vectors(rng: np.random.Generator, prods: list) -> dict:
    vecs = {k: unit(rng, len(prods), d) for k, d in DIMS.items()}
    return {p.id: {k: vecs[k][i] for k in DIMS} for i, p in enumerate(prods)}


def search_ms(writer, rng, n: int) -> tuple[list[float], list[float]]:
    vec, lex = [], []
    for _ in range(n):
        q = unit(rng, 1, DIMS["text"])
        t = time.perf_counter()
        with writer.lock.read():
            writer.vectors["text"].search(q, 10)
        vec.append(time.perf_counter() - t)
        t = time.perf_counter()
        with writer.lock.read():
            writer.lexical.search(" ".join(rng.choice(WORDS, 2)), 10)
        lex.append(time.perf_counter() - t)
    return vec, lex


def run(
    size: int,
    writes: int,
    rng: np.random.Generator,
    index_kind: str,
    skip_busy: bool = False,
    searches: int = 100,
) -> dict:
    from prodsearch.search.writer import IndexWriter

    root = Path(tempfile.mkdtemp(prefix="write-bench-"))
    try:
        writer = IndexWriter.open(
            root, backend="faiss", vector_params={"kind": index_kind}, auto_compact=False
        )
        commit_s = 0.0
        for start in range(0, size, 100_000):  # bounded memory at 1M
            prods = products(rng, start, min(100_000, size - start))
            vecs = vectors(rng, prods)
            t = time.perf_counter()
            writer.write(prods, vectors=vecs)
            commit_s += time.perf_counter() - t
            del prods, vecs
            print(
                f"  {size}: committed {min(start + 100_000, size)} in {commit_s:.0f} s",
                file=sys.stderr,
                flush=True,
            )
        t = time.perf_counter()
        writer.compact()
        compact_s = time.perf_counter() - t
        print(f"  {size}: compacted in {compact_s:.0f} s", file=sys.stderr, flush=True)
        writer.store.attributes()  # as a serving engine holds it: every write patches it
        lat = []
        for i in range(writes):
            p = products(rng, size + i, 1)
            v = vectors(rng, p)
            t = time.perf_counter()
            writer.write(p, vectors=v)
            lat.append(time.perf_counter() - t)
        print(f"  {size}: writes p50 {pct(lat)['p50']:.1f} ms", file=sys.stderr, flush=True)
        idle_vec, idle_lex = search_ms(writer, rng, searches)
        if skip_busy:
            writer.close()
            return {
                "size": size, "commit_s": commit_s, "compact_s": compact_s, "write": pct(lat),
                "idle_vec": pct(idle_vec), "idle_lex": pct(idle_lex), "busy_vec": None, "busy_lex": None,
                "busy_n": 0,
            }  # fmt: skip
        # pending writes so the compaction has work: 2% of the index changed
        upd = products(rng, 0, max(1, size // 50))
        writer.write(upd, vectors=vectors(rng, upd))
        done = threading.Event()
        th = threading.Thread(target=lambda: (writer.compact(), done.set()))
        th.start()
        busy_vec, busy_lex = [], []
        while not done.is_set():
            v, lx = search_ms(writer, rng, 5)
            busy_vec += v
            busy_lex += lx
        th.join()
        writer.close()
        return {
            "size": size,
            "commit_s": commit_s,
            "compact_s": compact_s,
            "write": pct(lat),
            "idle_vec": pct(idle_vec),
            "idle_lex": pct(idle_lex),
            "busy_vec": pct(busy_vec) if busy_vec else None,
            "busy_lex": pct(busy_lex) if busy_lex else None,
            "busy_n": len(busy_vec),
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="300,5000,44000")
    ap.add_argument("--writes", type=int, default=40)
    ap.add_argument("--kinds", default="text:384,image:1280", help="vector kinds and dimensions")
    ap.add_argument("--index-kind", default="auto", help="auto, flat or hnsw")
    ap.add_argument("--searches", type=int, default=100, help="idle searches per kind")
    ap.add_argument(
        "--skip-compaction-search",
        action="store_true",
        help="skip searching during a compaction (bounds the 1M run)",
    )
    ap.add_argument("--record", action="store_true", help="append the table to docs/benchmarks.md")
    args = ap.parse_args()
    DIMS.clear()
    DIMS.update({k: int(d) for k, d in (item.split(":") for item in args.kinds.split(","))})
    rng = np.random.default_rng(0)
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        r = run(size, args.writes, rng, args.index_kind, args.skip_compaction_search, args.searches)
        print(r, flush=True)
        f = lambda d, k: "-" if d is None else f"{d[k]:.1f}"  # noqa: E731
        rows.append(
            [
                str(size),
                f"{r['commit_s']:.1f}",
                f"{r['compact_s']:.1f}",
                f(r["write"], "p50"),
                f(r["write"], "p95"),
                f"{f(r['idle_vec'], 'p50')} / {f(r['busy_vec'], 'p50')}",
                f"{f(r['idle_vec'], 'p99')} / {f(r['busy_vec'], 'p99')}",
                f"{f(r['idle_lex'], 'p50')} / {f(r['busy_lex'], 'p50')}",
                f"{f(r['idle_lex'], 'p99')} / {f(r['busy_lex'], 'p99')}",
                str(r["busy_n"]),
            ]
        )
    header = [
        "products", "build commit s", "build compact s", "upsert p50 ms", "upsert p95 ms",
        "vector p50 ms idle / compacting", "vector p99 ms idle / compacting",
        "lexical p50 ms idle / compacting", "lexical p99 ms idle / compacting", "searches during compaction",
    ]  # fmt: skip
    body = table(rows, header)
    print(body)
    if args.record:
        record(
            "Write latency vs index size, search during compaction",
            "nice -n 10 python bench/write_bench.py " + " ".join(sys.argv[1:]),
            "Machine shared with other jobs (2-core AMD EPYC, 24 GiB, no GPU). One-product upserts through "
            "IndexWriter.write (SQLite commit of row + vectors + log entry, delta segments, attribute "
            f"table; encoding and HTTP excluded); synthetic titles, random vectors {DIMS}, index kind "
            f"{args.index_kind}.\n\n" + body,
        )


if __name__ == "__main__":
    main()
