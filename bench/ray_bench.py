"""Ray encoding throughput with 1 and 2 actors against the single-process path, in one run.

    python bench/ray_bench.py [--catalog styles.csv] [--limit 400] [--record]

Encodes the texts and photos of the first ``--limit`` products of the shared catalog with the real
encoders (MiniLM + EfficientNet-Lite0, onnxruntime), each run from an empty feature cache, on a
local Ray started here with every CPU of the machine: first the single-process path
(:func:`encode_products`), then :class:`RayEncoder` with 1 and 2 actors (1 CPU each). The overhead
of Ray is the ratio of their throughputs. Vectors are checked equal to the single-process ones.

The cluster line is a projection, not a measurement: the measured per-actor rate times the
actors of a hypothetical cluster, assuming linear scaling (shared storage and the driver's cache
writes not being the bottleneck).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import SHARED_CATALOG, record, table  # noqa: E402

MACHINE_NOTE = "2-core AMD EPYC, 24 GiB, no GPU, shared with other jobs"
CLUSTER_ACTORS = 64  # e.g. 16 nodes x 4 cores
CLUSTER_PRODUCTS = 10_000_000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--catalog", type=Path, default=SHARED_CATALOG)
    ap.add_argument("--limit", type=int, default=400)
    ap.add_argument("--record", action="store_true", help="append the table to docs/benchmarks.md")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="prodsearch-ray-bench-"))
    os.environ["PRODSEARCH_CACHE"] = str(work / "cache")  # ONNX exports and features: fresh, not ~/.cache

    import ray

    from prodsearch.catalog import read_catalog
    from prodsearch.catalog.readers import suggest_mapping
    from prodsearch.distributed.ray_encode import RayEncodeConfig, RayEncoder
    from prodsearch.encoders.cache import FeatureCache
    from prodsearch.search.builder import encode_products
    from prodsearch.search.recipe import EmbedderRecipe

    mapping = suggest_mapping(args.catalog).mapping
    products = read_catalog(args.catalog, mapping, limit=args.limit).products
    recipe = EmbedderRecipe(image_options={"cache": False})  # every run computes every photo
    embedder = recipe.build()
    encode_products(embedder, products[:8])  # exports the ONNX models once, as a deployment would
    n_items = len(products) + sum(1 for p in products if p.image_path)

    rows = []
    t = time.perf_counter()
    want = encode_products(embedder, products)
    single_s = time.perf_counter() - t
    rows.append(["single process", "-", f"{single_s:.1f}", f"{n_items / single_s:.1f}", "-", "1.00", "-"])
    print(rows[-1], flush=True)

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    per_actor = load_s = 0.0
    for actors in (1, 2):
        enc = RayEncoder(
            RayEncodeConfig(address="auto", actors=actors, batch_size=32),
            recipe.build,
            cache=FeatureCache(work / f"features-{actors}"),
        )
        t = time.perf_counter()
        got = enc(embedder, products)
        wall = time.perf_counter() - t
        for kind, (pos, vecs) in want.items():
            assert got[kind][0] == pos and np.allclose(got[kind][1], vecs, atol=1e-5), kind
        tm = enc.report.timings
        stages = ", ".join(f"{k} {tm[k]:.1f}" for k in ("load", "read", "decode", "encode", "write"))
        busy = tm["read"] + tm["decode"] + tm["encode"]  # worker-seconds once the models are loaded
        rows.append(
            [
                f"Ray, {actors} actor(s)",
                str(actors),
                f"{wall:.1f}",
                f"{n_items / wall:.1f}",
                f"{n_items / busy:.1f}",
                f"{single_s / wall:.2f}",
                stages,
            ]
        )
        print(rows[-1], flush=True)
        if actors == 1:
            per_actor, load_s = n_items / busy, tm["load"]
    ray.shutdown()

    out = table(
        rows,
        [
            "path",
            "actors",
            "wall s",
            "items/s (wall)",
            "items/s per actor, models loaded",
            "speed vs single (wall)",
            "stage seconds (summed over workers)",
        ],
    )
    projected_h = (
        CLUSTER_PRODUCTS * (n_items / len(products)) / (per_actor * CLUSTER_ACTORS) + load_s
    ) / 3600
    projection = (
        f"Projection (not measured): {CLUSTER_ACTORS} actors (one CPU core each, like this machine's) at the "
        f"measured steady per-actor rate of {per_actor:.1f} items/s, plus one model load ({load_s:.0f} s), "
        f"would encode {CLUSTER_PRODUCTS:,} products (text + photo) in about {projected_h:.1f} h, assuming "
        "linear scaling (photos on shared storage, the driver's cache writes not the bottleneck). On this "
        "small run the wall clock is dominated by actor start-up and model loading."
    )
    print(out + "\n\n" + projection)
    if args.record:
        body = (
            f"Machine note: {MACHINE_NOTE}; local Ray with {os.cpu_count()} CPUs. {len(products)} products of the "
            f"shared catalog = {n_items} items (texts + photos), MiniLM + EfficientNet-Lite0 on onnxruntime, "
            "empty feature cache each run; Ray vectors equal the single-process ones (atol 1e-5).\n\n"
            + out
            + "\n\n"
            + projection
        )
        record(
            "Ray encoding throughput (issue 10)", "python bench/ray_bench.py " + " ".join(sys.argv[1:]), body
        )


if __name__ == "__main__":
    main()
