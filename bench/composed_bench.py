"""Composed queries, "like this, but <colour>": the photo of product A plus a colour word should
find products of A's type in that colour (issue 11, item 14).

    python bench/composed_bench.py --index INDEX [--queries 200] [--record]

Queries: products A with a photo, each paired with a colour c != A's colour such that the index
holds at least one other product of A's type in colour c (seeded). Relevant: same type as A and
colour c. Systems: the photo anchor (default) and the free mix of photo and text vectors
(``anchor=False``, the behaviour before issue 11), both in hybrid mode. Reported: hit@10 (a relevant
product in the top 10), precision@10, and the shares of the top 10 with A's type and with colour c.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import record, table  # noqa: E402


def make_queries(products, type_field: str, colour_field: str, n: int, seed: int):
    by_type_colour: dict[tuple[str, str], set[str]] = defaultdict(set)
    for p in products:
        by_type_colour[(p.attributes.get(type_field, ""), p.attributes.get(colour_field, ""))].add(p.id)
    colours_of_type: dict[str, set[str]] = defaultdict(set)
    for t, c in by_type_colour:
        if t and c:
            colours_of_type[t].add(c)
    rng = random.Random(seed)
    pool = [
        p
        for p in products
        if p.image_path and p.attributes.get(type_field) and p.attributes.get(colour_field)
    ]
    rng.shuffle(pool)
    queries = []
    for p in pool:
        t, own = p.attributes[type_field], p.attributes[colour_field]
        others = sorted(c for c in colours_of_type[t] if c != own and c.upper() != "NA")
        if not others:
            continue
        c = rng.choice(others)
        queries.append((p, c, by_type_colour[(t, c)]))
        if len(queries) >= n:
            break
    return queries


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--type-field", default="articleType")
    ap.add_argument("--colour-field", default="baseColour")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pools", default="", help="also try these anchor-set sizes, e.g. 25,50,100")
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()

    from prodsearch.search import compose
    from prodsearch.search.engine import Engine

    with Engine.open(args.index, lazy_model=False) as engine:
        products = list(engine.store.iter_products())
        queries = make_queries(products, args.type_field, args.colour_field, args.queries, args.seed)
        rows = []
        systems = [
            ("photo + text mixed (before)", False, None),
            (f"photo anchor, pool {compose.ANCHOR_POOL}", True, None),
        ]
        systems += [(f"photo anchor, pool {n}", True, int(n)) for n in args.pools.split(",") if n]
        default_pool = compose.ANCHOR_POOL
        for name, anchor, pool in systems:
            compose.ANCHOR_POOL = pool or default_pool
            hit, prec, type_share, colour_share, secs = [], [], [], [], []
            for p, colour, relevant in queries:
                t = time.perf_counter()
                resp = engine.search(colour.lower(), image=p.image_path, k=10, anchor=anchor)
                secs.append(time.perf_counter() - t)
                top = resp.results
                rel = [r.id in relevant for r in top]
                hit.append(any(rel))
                prec.append(sum(rel) / 10)
                type_share.append(
                    sum(r.attributes.get(args.type_field) == p.attributes[args.type_field] for r in top) / 10
                )
                colour_share.append(sum(r.attributes.get(args.colour_field) == colour for r in top) / 10)
            rows.append([
                name, str(len(queries)), f"{np.mean(hit):.3f}", f"{np.mean(prec):.3f}", f"{np.mean(type_share):.3f}",
                f"{np.mean(colour_share):.3f}", f"{np.median(secs) * 1000:.0f}",
            ])  # fmt: skip
        info = engine.info()
    body = (
        f"Index: `{args.index}` ({info['products']} products, embedder {info['embedder']}, aligned "
        f"{info['aligned']}); query = photo of product A + a colour word c (lower case); relevant = "
        f"{args.type_field} of A and {args.colour_field} c; hybrid mode, k=10.\n\n"
        + table(
            rows, ["system", "queries", "hit@10", "precision@10", "A's type @10", "colour c @10", "p50 ms"]
        )
    )
    print(body)
    if args.record:
        record(
            "Composed queries: photo + colour word",
            "python bench/composed_bench.py " + " ".join(sys.argv[1:]),
            body,
        )


if __name__ == "__main__":
    main()
