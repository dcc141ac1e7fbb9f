"""Index the whole shared catalog and measure build time, memory, size and query latency.

    python bench/index_bench.py [--catalog styles.csv] [--limit N] [--queries 200] [--record]

Reports ingest+encode+build time and products/s, peak RSS, index size on disk, and in-process
text / image query latency (k=10) p50/p95/p99, with brute-force numpy search over the same
vectors measured side by side as the reference (and the ANN's recall@10 against it).
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import SHARED_CATALOG, dir_size_mb, pct, peak_rss_mb, record, table  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--catalog", type=Path, default=SHARED_CATALOG)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--out", type=Path, default=None, help="index folder (default: a temp folder)")
    ap.add_argument("--image-size", type=int, default=None, help="default: near the photos' native size")
    ap.add_argument("--text-encoder", default="minilm", help="e.g. minilm-int8")
    ap.add_argument("--record", action="store_true", help="append the table to docs/benchmarks.md")
    args = ap.parse_args()

    from prodsearch.catalog.images import load_image
    from prodsearch.search.builder import build_index
    from prodsearch.search.engine import Engine
    from prodsearch.search.recipe import EmbedderRecipe

    out = args.out or Path(tempfile.mkdtemp(prefix="prodsearch-bench-")) / "index"
    if out.exists():
        shutil.rmtree(out)
    recipe = EmbedderRecipe(
        text_encoder=args.text_encoder,
        image_options={"image_size": args.image_size} if args.image_size else {},
    )
    t0 = time.perf_counter()
    rep = build_index(args.catalog, out, recipe=recipe, limit=args.limit, progress=True)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    rep2 = build_index(args.catalog, out, recipe=recipe, limit=args.limit)
    rebuild_s = time.perf_counter() - t0

    rng = random.Random(0)
    engine = Engine.open(out, lazy_model=False)
    products = list(engine.store.iter_products())
    sample = rng.sample(products, min(args.queries, len(products)))
    text_queries = [" ".join(p.title.split()[1:]) or p.title for p in sample]  # titles minus the brand
    images = [load_image(p.image_path) for p in sample if p.image_path]

    def timed(fn, items):
        lat, out_ = [], []
        fn(items[0])  # warm-up
        for it in items:
            t = time.perf_counter()
            out_.append(fn(it))
            lat.append(time.perf_counter() - t)
        return lat, out_

    text_lat, _ = timed(lambda q: engine.search(q, k=10, mode="text"), text_queries)
    hyb_lat, _ = timed(lambda q: engine.search(q, k=10), text_queries)
    img_lat, _ = timed(lambda im: engine.search(image=im, k=10, mode="image"), images)

    rows = []
    for kind, vi in engine.vectors.items():
        vecs = vi.get(vi.iids)
        qs = vecs[np.random.default_rng(0).choice(len(vecs), min(args.queries, len(vecs)), replace=False)]
        ann_lat, ann_res = timed(lambda q, vi=vi: vi.search(q[None], 10)[0], list(qs))
        bf_lat, bf_res = timed(lambda q, vecs=vecs: np.argsort(-(vecs @ q))[:10], list(qs))
        ids = np.asarray(vi.iids)
        recall = np.mean(
            [
                len(set(np.asarray(a.iids).tolist()) & set(ids[b].tolist())) / 10
                for a, b in zip(ann_res, bf_res, strict=False)
            ]
        )
        a, b = pct(ann_lat), pct(bf_lat)
        rows.append(
            [
                f"{kind} vectors: index search only",
                f"{a['p50']:.2f}",
                f"{a['p95']:.2f}",
                f"{a['p99']:.2f}",
                f"recall@10 vs brute force {recall:.3f}",
            ]
        )
        rows.append(
            [
                f"{kind} vectors: numpy brute force",
                f"{b['p50']:.2f}",
                f"{b['p95']:.2f}",
                f"{b['p99']:.2f}",
                f"{len(vecs)} x {vecs.shape[1]}",
            ]
        )
    for name, lat in (
        ("text query, end to end (encode+search)", text_lat),
        ("hybrid text query (every signal it reaches, RRF)", hyb_lat),
        ("image query, end to end (decode+encode+search)", img_lat),
    ):
        p = pct(lat)
        rows.append([name, f"{p['p50']:.2f}", f"{p['p95']:.2f}", f"{p['p99']:.2f}", f"{len(lat)} queries"])

    n = rep.accepted
    summary = table(
        [
            ["products indexed", f"{n} ({rep.rejected} rejected)"],
            ["ingest + encode + build", f"{build_s:.1f} s ({n / build_s:.0f} products/s)"],
            [
                "  of which read+validate / encode / save",
                f"{rep.timings.get('read', 0):.1f} / {rep.timings.get('encode', 0):.1f} / {rep.timings.get('save', 0):.1f} s",
            ],
            ["re-index unchanged catalog", f"{rebuild_s:.1f} s (did work: {rep2.did_work})"],
            [
                "encoders (text / image input px)",
                f"{engine.embedder.text.name} / {engine.embedder.image.spec().get('preprocess', {}).get('size')}",
            ],
            ["peak RSS", f"{peak_rss_mb():.0f} MB"],
            ["index size on disk", f"{dir_size_mb(out):.1f} MB"],
            [
                "vector index kinds",
                ", ".join(f"{k}: {v.ann_kind} ({len(v)})" for k, v in engine.vectors.items()),
            ],
        ],
        ["build", "value"],
    )
    lat_table = table(rows, ["latency (k=10, in-process)", "p50 ms", "p95 ms", "p99 ms", "note"])
    print(summary)
    print()
    print(lat_table)
    if args.record:
        cmd = "python bench/index_bench.py " + " ".join(sys.argv[1:])
        record("Index build and query latency", cmd, summary + "\n\n" + lat_table)
    engine.close()


if __name__ == "__main__":
    main()
