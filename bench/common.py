"""Helpers shared by the benchmark scripts: percentiles, machine description, recording rows."""

from __future__ import annotations

import os
import platform
import resource
import subprocess
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BENCH_DOC = ROOT / "docs" / "benchmarks.md"
SHARED_CATALOG = ROOT.parent / "shared/datasets/fashion-product-images-small/styles.csv"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores {cpu}, {mem:.0f} GiB RAM, Python {platform.python_version()}"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pct(samples_s: list[float]) -> dict[str, float]:
    a = np.asarray(samples_s) * 1000
    return {
        "p50": float(np.percentile(a, 50)),
        "p95": float(np.percentile(a, 95)),
        "p99": float(np.percentile(a, 99)),
    }


def dir_size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 2**20


def git_rev() -> str:
    """The short commit, with ``+changes`` when the code (src/, bench/) differs from it."""
    try:
        rev = subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True).strip()
        changed = subprocess.run(
            ["git", "diff", "--quiet", "HEAD", "--", "src", "bench"], cwd=ROOT, check=False
        ).returncode
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + ("+changes" if changed else "")


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    line = lambda r: "| " + " | ".join(str(x).ljust(w) for x, w in zip(r, widths, strict=False)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def record(section: str, command: str, body: str) -> None:
    """Append a dated section to docs/benchmarks.md."""
    BENCH_DOC.parent.mkdir(exist_ok=True)
    text = (
        BENCH_DOC.read_text()
        if BENCH_DOC.exists()
        else "# Benchmarks\n\nEvery row: date, machine, command, numbers.\n"
    )
    text += (
        f"\n## {section} ({date.today().isoformat()}, commit {git_rev()})\n\n"
        f"Machine: {machine()}\n\nCommand: `{command}`\n\n{body}\n"
    )
    BENCH_DOC.write_text(text)


def record_run(section: str, script: str, argv: list[str] | None, body: str) -> None:
    """:func:`record` with the exact command line of ``script`` (``argv`` or the process's own)."""
    import shlex
    import sys

    args = argv if argv is not None else sys.argv[1:]
    record(section, f"python bench/{script} " + " ".join(shlex.quote(a) for a in args), body)


def brute_rank(queries, docs, depth: int = 100):
    """Exact top-``depth`` positions of ``docs`` for each query (inner product, best first)."""
    import numpy as np

    return np.argsort(-(queries @ docs.T), axis=1, kind="stable")[:, :depth]


def protocol_scores(rankings, query_set) -> dict[str, float]:
    """Mean of every metric of an evaluation protocol's judgements (evaluation/qrels.py ``score``)
    for ranked corpus positions ``rankings`` (Q, depth)."""
    import numpy as np

    from prodsearch.evaluation.qrels import score

    out: dict[str, float] = {}
    for j in query_set.judgements:
        out.update({k: float(np.nanmean(v)) for k, v in score(rankings, j).items()})
    return out
