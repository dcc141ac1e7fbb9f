"""A training run judges itself against the untuned index it would replace (issue 8, item 1).

Learning must never make search worse, so ``prodsearch train`` ends by building the index its run
would serve (the catalog, the run's untuned base encoders, and the run's trained space beside
them) in a scratch folder, and calibrating its fusion (:mod:`prodsearch.search.calibration`):
weights fitted on the run's *validation* products, then every fusion measured on its *test*
products (queries it never trained on) with the **whole catalog as the gallery**, the same
protocol as ``index --model`` and ``prodsearch calibrate``. Per query kind the served fusion is
compared with the untuned signals alone, with a 95% paired-bootstrap interval of the gain.

The comparison goes to the run folder: ``calibration.json`` (the full calibration) and
``run.json["self_evaluation"]`` (per kind: metric, queries, gallery, untuned, trained, gain and its
interval, and a verdict line where the trained model lost). The scratch index is deleted.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from prodsearch.paths import atomic_write_text

log = logging.getLogger(__name__)


def self_evaluate(
    run_dir: str | Path,
    catalog: str | Path,
    *,
    mapping: Any = None,
    limit: int | None = None,
    progress: bool = False,
    max_queries: int = 300,
) -> dict[str, Any]:
    """Build the run's index of ``catalog`` (its first ``limit`` rows: the run's ``max_products``)
    aside, calibrate it, and record the comparison with the untuned index in ``run_dir/run.json``.
    Returns what was recorded."""
    from prodsearch.search.builder import build_index
    from prodsearch.search.calibration import calibrate, verdict
    from prodsearch.search.engine import Engine
    from prodsearch.search.recipe import EmbedderRecipe

    run_dir = Path(run_dir).resolve()
    with tempfile.TemporaryDirectory(prefix="prodsearch-selfeval-") as tmp:
        rep = build_index(
            catalog,
            Path(tmp) / "index",
            mapping=mapping,
            limit=limit,
            recipe=EmbedderRecipe(model=str(run_dir)),
            progress=progress,
        )
        with Engine.open(rep.index) as engine:
            gallery = len(engine)
            cal = calibrate(engine, max_queries=max_queries)  # also writes run_dir/calibration.json
    if cal is None:
        result: dict[str, Any] = {
            "gallery": gallery,
            "skipped": "too few held-out products for 20 validation queries of any kind",
        }
    else:
        result = {
            "gallery": gallery,
            "kinds": {
                kind: {
                    "metric": row["metric"],
                    "queries": row["queries"],
                    "untuned": max(row["untuned_rrf"], row["untuned_calibrated"]),
                    "trained": row["calibrated"],
                    **({"gain": row["gain"], "gain_ci": row["gain_ci"]} if "gain" in row else {}),
                }
                for kind, row in (cal.get("comparison") or {}).items()
            },
            "weights": cal["weights"],
            "verdict": verdict(cal),
        }
    path = run_dir / "run.json"
    run = json.loads(path.read_text()) if path.is_file() else {}
    run["self_evaluation"] = result
    atomic_write_text(path, json.dumps(run, indent=2, default=str))
    return result


def format_self_evaluation(result: dict[str, Any]) -> str:
    """The recorded comparison as lines for the terminal."""
    head = (
        f"self-evaluation against the untuned index (gallery: all {result['gallery']} products the run saw)"
    )
    if "skipped" in result:
        return f"{head}: skipped, {result['skipped']}"
    lines = [head + ":"]
    for kind, row in result["kinds"].items():
        line = (
            f"  {kind} queries, {row['metric']} on {row['queries']} held-out test queries: "
            f"untuned {row['untuned']:.3f}, trained {row['trained']:.3f}"
        )
        if "gain" in row:
            line += f" (gain {row['gain']:+.3f}, 95% interval {row['gain_ci'][0]:+.3f} to {row['gain_ci'][1]:+.3f})"
        lines.append(line)
    return "\n".join(lines)


__all__ = ["self_evaluate", "format_self_evaluation"]
