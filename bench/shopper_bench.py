"""Real shopper photos -> product through the served engine (issue 8): the grocery catalog's in-store
``test`` photos searched on an untuned index and on an index built with a trained model, in the
default mode and in image mode, with the index's own fusion (calibrated where it has one).

Usage::

    python bench/shopper_bench.py --untuned IDX --tuned IDX_WITH_MODEL [--limit 829] [--record]

Build the two indexes first (the same catalog, the tuned one with ``--model RUN``)::

    prodsearch index ../shared/datasets/grocery-store/products.csv --out IDX
    prodsearch train ../shared/datasets/grocery-store/products.csv --out RUN
    prodsearch index ../shared/datasets/grocery-store/products.csv --out IDX_WITH_MODEL --model RUN
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, pct, record_run, table  # noqa: E402

GROCERY = ROOT.parent / "shared" / "datasets" / "grocery-store"


def shopper_photos(limit: int | None) -> list[tuple[str, str]]:
    with open(GROCERY / "photos.csv", newline="") as fh:
        rows = [
            (str(GROCERY / r["photo"]), r["product_id"]) for r in csv.DictReader(fh) if r["split"] == "test"
        ]
    if limit and limit < len(rows):
        rng = np.random.default_rng(0)
        rows = [rows[i] for i in sorted(rng.choice(len(rows), limit, replace=False))]
    return rows


def measure(index: Path, photos: list[tuple[str, str]], mode: str) -> dict[str, float]:
    from prodsearch.search.calibration import format_weights
    from prodsearch.search.engine import Engine

    hits1, hits5, rr, times = [], [], [], []
    with Engine.open(index) as engine:
        for path, pid in photos:
            t = time.perf_counter()
            ids = [r.id for r in engine.search(image=path, k=10, mode=mode).results]
            times.append(time.perf_counter() - t)
            hits1.append(ids[:1] == [pid])
            hits5.append(pid in ids[:5])
            rr.append(1.0 / (ids.index(pid) + 1) if pid in ids else 0.0)
        fusion = "calibrated" if engine.calibration else "rrf"
        weights = engine.fusion_weights("image")
    return {
        "hit@1": float(np.mean(hits1)),
        "hit@5": float(np.mean(hits5)),
        "mrr@10": float(np.mean(rr)),
        "p50 ms": pct(times)["p50"],
        "fusion": fusion,
        "weights": format_weights({s: w for s, w in weights.items() if s in ("image", "joint")}),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--untuned", type=Path, required=True)
    ap.add_argument("--tuned", type=Path, required=True)
    ap.add_argument("--limit", type=int, default=None, help="shopper test photos (default: all 2,485)")
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args(argv)
    photos = shopper_photos(args.limit)
    rows = []
    for name, index in (("untuned", args.untuned), ("with trained model", args.tuned)):
        for mode in ("hybrid", "image"):
            m = measure(index, photos, mode)
            rows.append(
                [
                    name,
                    mode,
                    m["fusion"],
                    m["weights"],
                    f"{m['hit@1']:.3f}",
                    f"{m['hit@5']:.3f}",
                    f"{m['mrr@10']:.3f}",
                    f"{m['p50 ms']:.0f}",
                ]
            )
    header = ["index", "mode", "fusion", "photo weights", "hit@1", "hit@5", "MRR@10", "p50 ms"]
    body = table(rows, header)
    print(body)
    if args.record:
        note = (
            f"{len(photos)} real in-store shopper photos (grocery `test` split) searched against the 81 "
            "catalogue products through Engine.search (what the CLI and the service run)."
        )
        record_run(
            "Shopper photos -> product through the served engine (grocery)",
            "shopper_bench.py",
            argv,
            note + "\n\n" + body,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
