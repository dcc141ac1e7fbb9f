"""Learning from shoppers on the grocery catalog (issue 12, item 4): shopper photo -> product hit@1/@5
on the grocery ``test`` photos through the served engine, before and after learning from an
interaction log built from its ``train`` shopper photos (photo -> product, event click).

Steps (each timed):

1. the log: one click per ``train`` photo, in a seeded random order one minute apart (so the later
   window holds every kind of product), read back and validated by ``read_interactions``;
2. ``split_by_time``: the earlier ``1 - --holdout`` of the log trains, the later window calibrates
   the fusion (its photos join the calibration's validation photos);
3. the untuned index (``prodsearch index``, calibrated on its catalog and on the later window);
4. training on the catalog's pairs plus the earlier window's pairs (and, as a control, on the
   catalog's pairs alone), an index with each model, calibrated the same way;
5. the ``test`` photos searched through ``Engine.search`` (bench/shopper_bench.py's ``measure``).

Usage::

    python bench/interaction_bench.py [--work /tmp/prodsearch-interactions] [--limit 829] [--record]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import record_run, table  # noqa: E402
from shopper_bench import GROCERY, measure, shopper_photos  # noqa: E402

T0 = 1_793_577_600.0  # 2026-11-02T00:00:00Z


def write_log(path: Path, seed: int = 0) -> int:
    """One click per grocery ``train`` shopper photo, shuffled, a minute apart, 5 per session."""
    with open(GROCERY / "photos.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == "train"]
    random.Random(seed).shuffle(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for i, r in enumerate(rows):
            rec = {
                "query_image": str(GROCERY / r["photo"]),
                "product_id": r["product_id"],
                "event": "click",
                "timestamp": T0 + 60.0 * i,
                "session_id": f"s{i // 5}",
            }
            fh.write(json.dumps(rec) + "\n")
    return len(rows)


def prodsearch(*args: str) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "prodsearch.cli", *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def calibrate_with(index: Path, events) -> tuple[float, dict]:
    from prodsearch.search.calibration import calibrate
    from prodsearch.search.engine import Engine

    t = time.perf_counter()
    with Engine.open(index) as engine:
        cal = calibrate(engine, interactions=events) or {}
    return time.perf_counter() - t, cal


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/prodsearch-interactions"))
    ap.add_argument("--limit", type=int, default=None, help="grocery test photos (default: all 2,485)")
    ap.add_argument("--holdout", type=float, default=0.2, help="later share of the log (calibration)")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from prodsearch.interactions import read_interactions, split_by_time
    from prodsearch.interactions.signals import graded_pairs
    from prodsearch.interactions.training import train_with_interactions
    from prodsearch.training.main import train

    work, catalog = args.work, GROCERY / "products.csv"
    work.mkdir(parents=True, exist_ok=True)
    secs: dict[str, float] = {}
    t = time.perf_counter()
    n = write_log(work / "clicks.jsonl")
    with open(catalog, newline="") as fh:
        ids = [r["id"] for r in csv.DictReader(fh)]
    clicks = read_interactions(work / "clicks.jsonl", ids, strict=True)
    earlier, later = split_by_time(clicks, args.holdout)
    secs["log (write + validate)"] = time.perf_counter() - t
    print(f"{clicks.summary()}; training window {len(earlier)}, calibration window {len(later)}")

    cfg = {"threads": args.threads, "epochs": args.epochs, "batch_size": 64, "patience": 0}
    t = time.perf_counter()
    train(catalog, work / "run-catalog", cfg, overwrite=True, progress=False)
    secs["train (catalog pairs only)"] = time.perf_counter() - t
    t = time.perf_counter()
    pairs = graded_pairs(earlier.events)
    res = train_with_interactions(catalog, work / "run-shoppers", pairs, cfg, overwrite=True, progress=False)
    secs[f"train (catalog + {len(pairs)} shopper pairs)"] = time.perf_counter() - t
    print(f"trained with shoppers' pairs in {res.seconds:.0f} s, {res.epochs_run} epochs")

    systems = {
        "untuned": ("idx-untuned", []),
        "trained on the catalog only": ("idx-catalog", ["--model", str(work / "run-catalog")]),
        "trained with shoppers' clicks": ("idx-shoppers", ["--model", str(work / "run-shoppers")]),
    }
    rows = []
    photos = shopper_photos(args.limit)
    for name, (folder, extra) in systems.items():
        idx = work / folder
        shutil.rmtree(idx, ignore_errors=True)
        secs[f"index: {name}"] = prodsearch("index", str(catalog), "--out", str(idx), *extra)
        secs[f"calibrate: {name}"], cal = calibrate_with(idx, later.events)
        t = time.perf_counter()
        for mode in ("hybrid", "image"):
            m = measure(idx, photos, mode)
            rows.append(
                [
                    name,
                    mode,
                    m["weights"],
                    f"{m['hit@1']:.3f}",
                    f"{m['hit@5']:.3f}",
                    f"{m['mrr@10']:.3f}",
                    f"{m['p50 ms']:.0f}",
                ]
            )
        secs[f"search {len(photos)} photos x 2 modes: {name}"] = time.perf_counter() - t
    header = ["index", "mode", "photo weights (calibrated)", "hit@1", "hit@5", "MRR@10", "p50 ms"]
    body = table(rows, header)
    timing = table([[k, f"{v:.0f}"] for k, v in secs.items()], ["step", "seconds"])
    print(body + "\n\n" + timing)
    if args.record:
        note = (
            f"Interaction log: one click per grocery `train` shopper photo ({n}), validated "
            f"({clicks.summary()}); the earlier {1 - args.holdout:.0%} by time ({len(earlier)} clicks) are "
            f"training pairs (photo -> product), the later window ({len(later)}) joins the fusion calibration "
            f"of every index. Training: defaults + {cfg}. Measured: {len(photos)} `test` shopper photos "
            "(never in the log) against the 81 catalogue products through Engine.search."
        )
        record_run(
            "Learning from shoppers' clicks: grocery shopper photo -> product, before and after",
            "interaction_bench.py",
            argv,
            note + "\n\n" + body + "\n\n" + timing,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
