"""Data-parallel training on this machine: steps/s of one process vs 2 DDP processes (gloo, CPU).

    python bench/ddp_bench.py [--catalog styles.csv] [--max-products 5000] [--epochs 4] [--repeats 3] [--record]

Each run is one `prodsearch train` with the same flags (heads on the cached frozen-tower features,
the default recipe, the same global batch): one process with 1 thread, and `torchrun --standalone
--nproc-per-node 2` with 1 thread per process. Speed is read from each run's metrics.jsonl
(``epoch_seconds``: the training epoch, evaluation excluded), over the epochs after the first
(warm-up). The two are run alternately ``--repeats`` times (the machine is shared: its load
drifts) and the table gives the median and the range. The frozen-tower features come from the
feature cache (the first run computes them if needed, outside the timed epochs).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED_CATALOG, record_run, table  # noqa: E402

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone"]


def epoch_seconds(launch: list[str], catalog: str, out: Path, flags: list[str]) -> tuple[float, int, float]:
    """(mean seconds per training epoch after the first, optimiser steps per epoch, last val MRR)."""
    cmd = [*launch, "-m", "prodsearch.cli", "train", catalog, "--out", str(out), *flags]
    print(" ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    timed = rows[1:] or rows
    return sum(r["epoch_seconds"] for r in timed) / len(timed), rows[0]["step"], rows[-1]["val_mrr"]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--catalog", default=str(SHARED_CATALOG))
    ap.add_argument("--max-products", type=int, default=5000)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--record", action="store_true", help="append the table to docs/benchmarks.md")
    args = ap.parse_args(argv)

    flags = ["--max-products", str(args.max_products), "--epochs", str(args.epochs), "--threads", "1"]
    flags += ["--batch-size", str(args.batch_size), "--patience", "0", "--no-progress"]
    work = Path(tempfile.mkdtemp(prefix="prodsearch-ddp-bench-"))
    runs = {
        "1 process, 1 thread": [sys.executable],
        "torchrun, 2 processes x 1 thread (gloo)": [*TORCHRUN, "--nproc-per-node", "2"],
    }
    got: dict[str, list[tuple[float, int, float]]] = {label: [] for label in runs}
    for r in range(args.repeats):
        for k, (label, launch) in enumerate(runs.items()):
            got[label].append(epoch_seconds(launch, args.catalog, work / f"run{r}-{k}", flags))
    base = statistics.median(s for s, _, _ in got["1 process, 1 thread"])
    rows = []
    for label, results in got.items():
        secs = sorted(s for s, _, _ in results)
        med, steps = statistics.median(secs), results[0][1]
        rows.append(
            [
                label,
                str(steps),
                f"{med:.2f} ({secs[0]:.2f}-{secs[-1]:.2f})",
                f"{steps / med:.2f}",
                f"{base / med:.2f}",
                f"{results[-1][2]:.4f}",
            ]
        )
    header = ["run", "steps/epoch", "s/epoch median (range)", "steps/s", "speed vs 1 process", "val MRR"]
    body = table(rows, header)
    print(body)
    if args.record:
        note = (
            f"`prodsearch train` heads on cached features, {args.max_products} fashion products, global batch "
            f"{args.batch_size}, {args.epochs} epochs timed over epochs 2..{args.epochs}, {args.repeats} alternating "
            "runs each. Both rows train the same model (same global batch and draws; dropout masks differ per "
            "rank, hence the small MRR difference). A 2-core machine shared with other jobs: the range shows "
            "how much its load moved the timings."
        )
        record_run("Data-parallel training: 1 vs 2 processes", "ddp_bench.py", argv, note + "\n\n" + body)


if __name__ == "__main__":
    main()
