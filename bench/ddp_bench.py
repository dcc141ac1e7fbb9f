"""Data-parallel training on this machine: steps/s of one process vs 2 DDP processes (gloo, CPU).

    python bench/ddp_bench.py [--catalog styles.csv] [--max-products 5000] [--epochs 3] [--record]

Each row is one `prodsearch train` run with the same flags (heads on the cached frozen-tower
features, the default recipe; the global batch is the same in every row): one process with 1
thread, one process with 2 threads (the non-distributed way to use 2 cores), and
`torchrun --standalone --nproc-per-node 2` with 1 thread per process. Speed is read from each
run's metrics.jsonl (``epoch_seconds``: the training epoch, evaluation excluded), over the epochs
after the first (warm-up). The frozen-tower features come from the feature cache (the first run
computes them if needed, outside the timed epochs).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED_CATALOG, record_run, table  # noqa: E402

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone"]


def run(label: str, launch: list[str], catalog: str, out: Path, flags: list[str]) -> list[str]:
    cmd = [*launch, "-m", "prodsearch.cli", "train", catalog, "--out", str(out), *flags]
    print(" ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    timed = rows[1:] or rows
    seconds = sum(r["epoch_seconds"] for r in timed) / len(timed)
    steps = rows[0]["step"]  # optimiser steps per epoch
    return [label, str(steps), f"{seconds:.2f}", f"{steps / seconds:.2f}", f"{rows[-1]['val_mrr']:.4f}"]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--catalog", default=str(SHARED_CATALOG))
    ap.add_argument("--max-products", type=int, default=5000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--record", action="store_true", help="append the table to docs/benchmarks.md")
    args = ap.parse_args(argv)

    common = ["--max-products", str(args.max_products), "--epochs", str(args.epochs)]
    common += ["--batch-size", str(args.batch_size), "--patience", "0", "--no-progress"]
    work = Path(tempfile.mkdtemp(prefix="prodsearch-ddp-bench-"))
    python = [sys.executable]
    rows = [
        run("1 process, 1 thread", python, args.catalog, work / "one", [*common, "--threads", "1"]),
        run("1 process, 2 threads", python, args.catalog, work / "two-threads", [*common, "--threads", "2"]),
        run(
            "torchrun, 2 processes x 1 thread (gloo)",
            [*TORCHRUN, "--nproc-per-node", "2"],
            args.catalog,
            work / "ddp",
            [*common, "--threads", "1"],
        ),
    ]
    base = float(rows[0][3])
    for r in rows:
        r.append(f"{float(r[3]) / base:.2f}")
    body = table(
        rows, ["run", "steps/epoch", "s/epoch", "steps/s", "val MRR (last epoch)", "speed vs 1 process"]
    )
    print(body)
    if args.record:
        note = (
            f"`prodsearch train` heads on cached features, {args.max_products} fashion products, global batch "
            f"{args.batch_size}, {args.epochs} epochs (speed over epochs 2..{args.epochs}). The DDP row trains "
            "the same model (same global batch and draws; dropout masks differ per rank, hence the small MRR "
            "difference). On a 2-core machine shared with other jobs: timings are noisy."
        )
        record_run("Data-parallel training: 1 vs 2 processes", "ddp_bench.py", argv, note + "\n\n" + body)


if __name__ == "__main__":
    main()
