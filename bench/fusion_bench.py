"""Fusion side by side on one index (issue 8): untuned signals (RRF, calibrated), every signal
(RRF, min-max weighted sum, calibrated) and each signal alone, on the index's own held-out test
queries (search/calibration.py), with the calibrated weights fitted on its validation queries.

Usage::

    python bench/fusion_bench.py --index INDEX [--max-queries 300] [--record]

Calibrates the index (its manifest keeps the result, as ``prodsearch calibrate`` does) and prints
one row per query kind.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import record_run, table  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--max-queries", type=int, default=300)
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args(argv)

    from prodsearch.evaluation.report import fusion_table
    from prodsearch.search.calibration import calibrate
    from prodsearch.search.engine import Engine

    t0 = time.perf_counter()
    with Engine.open(args.index) as engine:
        cal = calibrate(engine, max_queries=args.max_queries)
        run = engine.manifest.model_run
    if cal is None:
        print("too few products for calibration queries")
        return 1
    weights, header, rows = fusion_table({"fusion": cal}, digits=3)
    body = (
        table(rows, header)
        + f"\n\nCalibrated weights: {weights}. Model run: {run or 'none (untuned index)'}."
    )
    print(body)
    print(f"({time.perf_counter() - t0:.0f} s)")
    if args.record:
        note = (
            "Text queries: attribute queries from test-split products (graded, nDCG@10); image queries: "
            "augmented test-split photos -> their product (MRR); text+image queries: a test-split photo + "
            "another colour its type comes in -> that type in that colour (nDCG@10, within the photo's "
            "calibrated anchor set). Gallery = every product of the index. "
            "untuned_* use only lexical/text/image; only_* rank by one signal."
        )
        record_run("Fusion: RRF vs weighted sum vs calibrated", "fusion_bench.py", argv, note + "\n\n" + body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
