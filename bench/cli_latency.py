"""Wall time of `prodsearch search` as a user runs it (a fresh process per query), per mode, with the
in-process search time beside it: the difference is start-up (imports, index and model loading).

    python bench/cli_latency.py [--index DIR | --limit 2000] [--runs 7] [--record]

Without --index it builds (once, cached under $PRODSEARCH_CACHE or ~/.cache/prodsearch/bench-cli) a
text-only MiniLM index of the first --limit products of the shared catalog. One warm-up query per
mode runs first (the first dense query after an install exports the ONNX model and writes the
torch-free query bundle). Targets (issue 11): p50 <= 1.5 s lexical, <= 3 s dense.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED_CATALOG, record, table  # noqa: E402

QUERIES = ["navy blue shirt for men", "red dress", "black leather wallet", "white sports shoes", "blue jeans"]
MODES = {"lexical": "lexical", "dense (text)": "text", "hybrid": "hybrid"}


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "prodsearch.cli", *args]


def build_index(limit: int) -> Path:
    from prodsearch.paths import cache_dir

    out = cache_dir() / "bench-cli" / f"index-text-{limit}"
    if not (out / "manifest.json").is_file():
        subprocess.run(
            cli(
                "index",
                str(SHARED_CATALOG),
                "--out",
                str(out),
                "--limit",
                str(limit),
                "--image-encoder",
                "none",
            ),
            check=True,
        )
    return out


def time_queries(index: Path, mode: str, runs: int) -> tuple[list[float], list[float]]:
    walls, inproc = [], []
    for i in range(runs + 1):
        q = QUERIES[i % len(QUERIES)]
        t = time.perf_counter()
        out = subprocess.run(
            cli("search", str(index), q, "--mode", mode, "-k", "10", "--json"),
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        wall = time.perf_counter() - t
        if i == 0:
            continue  # warm-up: page cache, first ONNX export
        walls.append(wall)
        inproc.append(sum(json.loads(out.stdout)["timings_ms"].values()) / 1000)
    return walls, inproc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", type=Path, help="an existing index (default: build a text-only one)")
    ap.add_argument("--limit", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--record", action="store_true", help="append the table to docs/benchmarks.md")
    args = ap.parse_args()
    index = args.index or build_index(args.limit)
    rows = []
    for label, mode in MODES.items():
        walls, inproc = time_queries(index, mode, args.runs)
        rows.append([
            label, str(len(walls)), f"{statistics.median(walls):.2f}", f"{max(walls):.2f}",
            f"{statistics.median(inproc) * 1000:.1f}",
        ])  # fmt: skip
    body = table(
        rows, ["mode", "runs", "wall p50 s", "wall max s", "in-process search p50 ms (incl. model load)"]
    )
    info = json.loads(
        subprocess.run(cli("info", str(index)), check=True, capture_output=True, text=True).stdout
    )
    body = (
        f"Index: `{index}` ({info['products']} products, embedder {info['embedder']}); one fresh "
        f"`prodsearch search INDEX QUERY --mode M -k 10 --json` process per query, after one warm-up.\n\n{body}"
    )
    print(body)
    if args.record:
        cmd = "python bench/cli_latency.py " + " ".join(sys.argv[1:])
        record("CLI search latency", cmd, body)


if __name__ == "__main__":
    main()
