"""Evaluation benchmark on the shared fashion catalog: every protocol, every system, one table.

Usage (reuses an index's stored vectors; build one first with ``prodsearch index``)::

    python bench/eval_bench.py --index INDEX [--model RUN ...] [--max-queries 2000] [--slice-by gender]
                               [--out DIR] [--append docs/benchmarks.md]

or, without an index, on the first ``--limit`` catalog rows (encodes them: slow on CPU)::

    python bench/eval_bench.py --catalog /work/shared/datasets/fashion-product-images-small/styles.csv --limit 2000

Prints a Markdown table of the headline metrics and, with ``--append``, appends it with the exact
command and timings to a benchmarks file.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

SHARED = Path("/work/shared/datasets/fashion-product-images-small/styles.csv")
HEADLINE = [
    "title2image/recall@1",
    "title2image/recall@10",
    "title2image/mrr",
    "attributes/ndcg@10",
    "attributes/recall@50",
    "attributes/map@100",
    "image2product/hit@1",
    "image2product/type_colour_precision@10",
    "composed/ndcg@10",
    "composed/precision@10",
]


def table(result: dict) -> str:
    from prodsearch.evaluation.report import fmt

    zs = sorted({k for m in result["systems"].values() for k in m if k.startswith("zeroshot/")})
    cols = [c for c in HEADLINE + zs if any(c in m for m in result["systems"].values())]
    lines = ["| system | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for system, metrics in result["systems"].items():
        lines.append(
            f"| {system} | " + " | ".join(fmt(metrics.get(c)) if c in metrics else "-" for c in cols) + " |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--index", type=Path, help="index folder built from the shared catalog")
    src.add_argument("--catalog", type=Path, default=None, help="catalog file (default: the shared catalog)")
    ap.add_argument(
        "--model", action="append", default=[], help="training run folder to compare (repeatable)"
    )
    ap.add_argument("--max-queries", type=int, default=2000)
    ap.add_argument("--limit", type=int, default=None, help="catalog rows (catalog mode only)")
    ap.add_argument("--slice-by", default="gender")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("eval-bench-report"))
    ap.add_argument("--append", type=Path, default=None, help="append the table to this Markdown file")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from prodsearch.evaluation.runner import run_evaluation

    target = args.index or args.catalog or SHARED
    mapping = None  # a catalog target uses the detected column mapping, as `prodsearch evaluate` does
    t0 = time.perf_counter()
    result = run_evaluation(
        target,
        args.out,
        models=args.model,
        mapping=mapping,
        slice_by=args.slice_by,
        seed=args.seed,
        max_queries=args.max_queries,
        limit=args.limit,
        progress=True,
    )
    wall = time.perf_counter() - t0
    cfg = result["config"]
    body = table(result)
    print(body)
    print(f"\n{cfg['corpus']} fields={cfg['fields']['type']}/{cfg['fields']['colour']} wall={wall:.0f}s")
    if args.append:
        cmd = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])])
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d")
        text = (
            f"\n## Evaluation ({stamp})\n\n`{cmd}`\n\nCorpus: {cfg['corpus']['products']} products "
            f"({cfg['corpus']['with_image']} with a photo), test split {cfg['corpus']['test']}; "
            f"queries per protocol: {result['queries']}; type field `{cfg['fields']['type']}`, colour field "
            f"`{cfg['fields']['colour']}`; wall time {wall:.0f} s on this machine (CPU).\n\n{body}\n"
        )
        args.append.parent.mkdir(parents=True, exist_ok=True)
        with open(args.append, "a", encoding="utf-8") as fh:
            fh.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
