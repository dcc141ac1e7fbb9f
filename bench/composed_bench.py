"""Composed queries, "like this, but <colour>": the photo of product A plus a colour word should
find products of A's type in that colour (issue 11, item 14; issue 8: calibrated weights).

    python bench/composed_bench.py --index INDEX [--queries 200] [--record]

Queries: the ``composed`` evaluation protocol (prodsearch.evaluation.protocols.composed_queries) on
the index's held-out test split (its trained model's split, else the training defaults; the same
products for an untuned and a trained index): a test product A with a photo, paired (seeded) with
another colour c of A's type in the catalog. Relevant: A's type in colour c. Systems, all hybrid:
the free mix of photo and text vectors (``anchor=False``, before issue 11); stop 20's photo anchor
(the 200 nearest photos, per signal the larger of the calibrated text and photo weights); the photo
anchor as served (anchor-set size and weights calibrated on validation photo + colour queries);
``--pools``: other anchor-set sizes with the served weights. Reported: hit@10, precision@10,
nDCG@10, the shares of the top 10 with A's type and with colour c.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import record, table  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--type-field", default=None, help="default: chosen as `prodsearch evaluate` does")
    ap.add_argument("--colour-field", default=None, help="default: chosen as `prodsearch evaluate` does")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pools", default="", help="also try these anchor-set sizes, e.g. 25,50,100")
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()

    from prodsearch.evaluation.corpus import Corpus, split_test_positions
    from prodsearch.evaluation.fields import resolve_fields
    from prodsearch.evaluation.protocols import composed_queries
    from prodsearch.evaluation.qrels import score
    from prodsearch.search import compose
    from prodsearch.search.calibration import split_params_for
    from prodsearch.search.engine import Engine

    with Engine.open(args.index, lazy_model=False) as engine:
        products = list(engine.store.iter_products())
        fields = resolve_fields(products, type_field=args.type_field, colour_field=args.colour_field)
        test = split_test_positions(products, split_params_for(engine))
        qs = composed_queries(Corpus(products, test=test), fields, max_queries=args.queries, seed=args.seed)
        systems = [("photo + text mixed (before issue 11)", False, None, None)]
        cal = engine.calibration
        if cal and {"text", "image"} <= set(cal["weights"]):
            w_t, w_i = cal["weights"]["text"], cal["weights"]["image"]
            larger = {s: max(w_t.get(s, 0.0), w_i.get(s, 0.0)) for s in set(w_t) | set(w_i)}
            name = f"photo anchor {compose.ANCHOR_POOL}, larger of text/photo weights (stop 20)"
            systems.append((name, True, compose.ANCHOR_POOL, larger))
        pool = compose.anchor_pool(engine)
        how = "calibrated" if cal and cal.get("anchor_pool") else "default"
        systems.append((f"photo anchor {pool}, {how} weights (served)", True, None, None))
        systems += [
            (f"photo anchor {n}, {how} weights", True, int(n), None) for n in args.pools.split(",") if n
        ]
        pos_of = {p.id: i for i, p in enumerate(products)}
        rows = []
        for name, anchor, pool, weights in systems:
            ranked, type_share, colour_share, secs = [], [], [], []
            for (colour, photo), src in zip(qs.queries, qs.source.tolist(), strict=True):
                t = time.perf_counter()
                resp = engine.search(
                    colour, image=photo, k=10, anchor=anchor, anchor_pool=pool, weights=weights
                )
                secs.append(time.perf_counter() - t)
                top = resp.results
                ranked.append([pos_of[r.id] for r in top] + [-1] * (10 - len(top)))
                a_type = products[src].attributes.get(fields.type)
                type_share.append(sum(r.attributes.get(fields.type) == a_type for r in top) / 10)
                colour_share.append(
                    sum(str(r.attributes.get(fields.colour, "")).lower() == colour for r in top) / 10
                )
            # the protocol's own metrics, as `prodsearch evaluate` scores them
            got = score(np.asarray(ranked, dtype=np.int64), qs.judgements[0])
            rows.append([
                name, str(len(qs)), f"{got['hit@10'].mean():.3f}", f"{got['precision@10'].mean():.3f}",
                f"{got['ndcg@10'].mean():.3f}", f"{np.mean(type_share):.3f}", f"{np.mean(colour_share):.3f}",
                f"{np.median(secs) * 1000:.0f}",
            ])  # fmt: skip
        info = engine.info()
    body = (
        f"Index: `{args.index}` ({info['products']} products = the gallery, embedder {info['embedder']}, "
        f"aligned {info['aligned']}); query = photo of a test-split product A + a colour word c (lower "
        f"case); relevant = {fields.type} of A and {fields.colour} c; hybrid mode, k=10.\n\n"
        + table(
            rows,
            [
                "system",
                "queries",
                "hit@10",
                "precision@10",
                "nDCG@10",
                "A's type @10",
                "colour c @10",
                "p50 ms",
            ],
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
