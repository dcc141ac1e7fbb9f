"""HTTP upsert latency against index size, end to end: ``prodsearch serve`` (uvicorn, one process)
with the default encoders, one product per ``POST /products``.

    python bench/http_write_bench.py [--sizes 300,5000,44000] [--writes 60] [--record]

The index holds N synthetic products (titles from a small vocabulary, 3 attributes) whose vectors
are random unit vectors at the default encoders' dimensions, written through the one write path
and compacted; its manifest names the default encoders, so the server encodes each upserted
product for real (text; and the photo for the "with photo" rows). Reports client-side latency
p50/p95 over loopback: encoding + SQLite commit of row, vectors and log entry + delta segments.
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import pct, record, table  # noqa: E402
from load_bench import free_port, start_server  # noqa: E402
from write_bench import WORDS, products, unit  # noqa: E402

TOKEN = "bench-token-0123456789"


def build(root: Path, size: int, embedder, recipe, index_kind: str, rng: np.random.Generator) -> None:
    from prodsearch.search import layout
    from prodsearch.search.writer import IndexWriter

    dims = {
        "text": embedder.text.dim,
        **({"image": embedder.image.dim} if embedder.image is not None else {}),
    }
    writer = IndexWriter.open(root, vector_params={"kind": index_kind}, auto_compact=False)
    try:
        for start in range(0, size, 50_000):
            prods = products(rng, start, min(50_000, size - start))
            vecs = {k: unit(rng, len(prods), d) for k, d in dims.items()}
            writer.write(prods, vectors={p.id: {k: vecs[k][i] for k in dims} for i, p in enumerate(prods)})
        writer.compact()
    finally:
        writer.close()
    layout.Manifest(
        embedder=embedder.spec(),
        mapping={"id": "id", "title": "title", "text": [], "attributes": ["colour", "kind", "year"]},
        settings={"recipe": recipe.to_dict(), "index_kind": index_kind},
    ).save(root)


def photo_b64(rng: np.random.Generator) -> str:
    from PIL import Image

    img = Image.fromarray(rng.integers(0, 255, size=(80, 60, 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return base64.b64encode(buf.getvalue()).decode()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="300,5000,44000")
    ap.add_argument("--writes", type=int, default=60)
    ap.add_argument(
        "--index-kind", default="flat", help="auto, flat, hnsw or ivfpq (flat skips the HNSW build)"
    )
    ap.add_argument(
        "--text-only",
        action="store_true",
        help="a text-only index (image encoder none): 1.5 GB of vectors at 1M products instead of 6.7 GB",
    )
    ap.add_argument("--record", action="store_true", help="append the table to docs/benchmarks.md")
    args = ap.parse_args()

    from prodsearch.search.recipe import EmbedderRecipe

    recipe = EmbedderRecipe(image_encoder=None) if args.text_only else EmbedderRecipe()
    embedder = recipe.build()
    kinds = (("text only", False),) if args.text_only else (("text only", False), ("with photo", True))
    rng = np.random.default_rng(0)
    env = {**os.environ, "PRODSEARCH_API_TOKEN": TOKEN}
    headers = {"Authorization": f"Bearer {TOKEN}"}
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        root = Path(tempfile.mkdtemp(prefix="http-write-bench-"))
        server = None
        try:
            t = time.perf_counter()
            build(root, size, embedder, recipe, args.index_kind, rng)
            build_s = time.perf_counter() - t
            port = free_port()
            server = start_server(root, port, None, [], env, timeout=300)
            base = f"http://127.0.0.1:{port}"
            with httpx.Client(timeout=60) as client:
                for name, with_photo in kinds:
                    lat = []
                    for i in range(args.writes + 5):
                        body = {
                            "id": f"w{i}-{int(with_photo)}",
                            "title": " ".join(rng.choice(WORDS, 5)),
                            "attributes": {"colour": "red", "kind": "shirt", "year": "2016"},
                        }
                        if with_photo:
                            body["image"] = photo_b64(rng)
                        t = time.perf_counter()
                        r = client.post(f"{base}/products", json=body, headers=headers)
                        dt = time.perf_counter() - t
                        if r.status_code != 200:
                            raise SystemExit(f"upsert failed: {r.status_code} {r.text}")
                        if i >= 5:  # the first requests warm the encoders up
                            lat.append(dt)
                    p = pct(lat)
                    rows.append(
                        [
                            str(size),
                            name,
                            f"{build_s:.0f}",
                            f"{p['p50']:.1f}",
                            f"{p['p95']:.1f}",
                            f"{p['p99']:.1f}",
                        ]
                    )
                    print(rows[-1], flush=True)
        finally:
            if server is not None:
                server.terminate()
                server.wait(timeout=60)
            shutil.rmtree(root, ignore_errors=True)
    body = table(rows, ["products", "upsert", "index build s", "HTTP p50 ms", "HTTP p95 ms", "HTTP p99 ms"])
    print(body)
    if args.record:
        record(
            "HTTP upsert latency vs index size",
            "nice -n 10 python bench/http_write_bench.py " + " ".join(sys.argv[1:]),
            "Machine shared with other jobs (2-core AMD EPYC, 24 GiB, no GPU). One product per POST "
            f"/products over loopback to `prodsearch serve`, default encoders ({embedder.spec().get('name')}); "
            f"synthetic index (random vectors{', text vectors only' if args.text_only else ''}), index kind "
            f"{args.index_kind}; {args.writes} timed writes "
            "per row after 5 warm-up writes.\n\n" + body,
        )


if __name__ == "__main__":
    main()
