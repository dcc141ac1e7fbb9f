"""A shop over time (issue 12): the fashion catalog's first ``--products`` rows, starting with half
of them and adding a tenth per step, each step followed by a refresh: sync, warm-start training with
a synthetic click log, evaluation against the served model (paired bootstrap over held-out
queries), promotion if better beyond the noise. Per step: sizes, times, current vs candidate, the
verdict, and, when the model is switched, the switch time and search latency during it (a client
thread searching without pause on the same engine).

The click log: per step, one event for a random half of the products listed so far, a query built
from the product's attributes ("{colour} {type}", "{gender} {type}") or title, event click /
add-to-cart / purchase (60/30/10), a minute apart, ending before the reading clock.

Usage::

    python bench/refresh_bench.py [--products 2000] [--steps 5] [--epochs 3] [--work DIR] [--record]
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import random
import shutil
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import pct, record_run, table  # noqa: E402

CATALOG = Path(__file__).resolve().parents[2] / "shared/datasets/fashion-product-images-small/styles.csv"
QUERIES = ["navy blue shirt for men", "black watch", "red dress for women", "white sports shoes", "brown bag"]


def click_log(path: Path, catalog: Path, n: int, step: int, seed: int = 0) -> int:
    """Synthetic clicks on the first ``n`` products (see the module docstring); returns the row count."""
    with open(catalog, newline="", encoding="utf-8") as fh:
        rows = list(itertools.islice(csv.DictReader(fh), n))
    rng = random.Random(seed * 1000 + step)
    picked = [r for r in rows if rng.random() < 0.5]
    t0 = time.time() - 86400 - 60.0 * len(picked)
    with open(path, "w", encoding="utf-8") as fh:
        for i, r in enumerate(picked):
            kind = rng.random()
            if kind < 0.4:
                q = f"{r['baseColour']} {r['articleType']}"
            elif kind < 0.7:
                q = f"{r['gender']} {r['articleType']}"
            else:
                q = r["productDisplayName"]
            event = rng.choices(["click", "add_to_cart", "purchase"], [6, 3, 1])[0]
            rec = {"query": q, "product_id": r["id"], "event": event, "timestamp": t0 + 60.0 * i}
            fh.write(json.dumps(rec) + "\n")
    return len(picked)


class Load:
    """A client thread searching ``engine`` without pause; latencies with their start times."""

    def __init__(self, engine) -> None:
        self.engine, self.samples, self.errors = engine, [], 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            t = time.perf_counter()
            try:
                self.engine.search(QUERIES[i % len(QUERIES)], k=10)
            except Exception:  # noqa: BLE001 - counted: the switch must cause none
                self.errors += 1
            self.samples.append((t, time.perf_counter() - t))
            i += 1

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def window(self, t0: float, t1: float) -> list[float]:
        return [d for t, d in self.samples if t0 <= t <= t1 or (t < t0 and t + d > t0)]


def switch_under_load(engine, fn) -> tuple[dict, dict]:
    """Run ``fn()`` (a switch) while a client searches; latency before (1 s) and during it."""
    for q in QUERIES:  # the query encoder loaded and warm before the clock starts
        engine.search(q, k=10)
    with Load(engine) as load:
        time.sleep(1.0)
        t0 = time.perf_counter()
        res = fn()
        t1 = time.perf_counter()
        time.sleep(0.3)
    before = [d for t, d in load.samples if t < t0 - 0.05]
    during = load.window(t0, t1)
    return res, {
        "before_p50_ms": pct(before)["p50"],
        "during_p50_ms": pct(during)["p50"] if during else float("nan"),
        "during_max_ms": max(during) * 1000 if during else float("nan"),
        "searches": len(during),
        "errors": load.errors,
    }


def main(argv: list[str] | None = None) -> int:
    import torch

    from prodsearch.registry import Registry
    from prodsearch.registry.evaluate import compare_versions
    from prodsearch.registry.refresh import ensure_registered, promote_if_better, refresh, train_candidate
    from prodsearch.registry.swap import switch_to
    from prodsearch.search.builder import build_index
    from prodsearch.search.calibration import calibrate
    from prodsearch.search.engine import Engine
    from prodsearch.search.recipe import EmbedderRecipe
    from prodsearch.training.main import train

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--catalog", type=Path, default=CATALOG)
    ap.add_argument("--products", type=int, default=2000, help="catalog rows at the last step")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--work", type=Path, default=Path("/tmp/prodsearch-refresh-bench"))
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    idx = args.work / "index"
    n0 = args.products // 2
    step_n = args.products // 10

    t = time.perf_counter()
    cfg = {"epochs": args.epochs, "max_products": n0, "threads": 1}
    train(args.catalog, args.work / "run0", cfg, progress=False)
    build_index(args.catalog, idx, recipe=EmbedderRecipe(model=str(args.work / "run0")), limit=n0)
    with Engine.open(idx) as engine:
        calibrate(engine)
        ensure_registered(engine)
    print(f"start: {n0} products, v1 trained and indexed in {time.perf_counter() - t:.0f}s", flush=True)

    rows, last_cand = [], None
    for step in range(1, args.steps + 1):
        n = n0 + step * step_n
        log = args.work / f"clicks-{step}.jsonl"
        clicks = click_log(log, args.catalog, n, step)
        rep = refresh(idx, args.catalog, steps=("sync",), limit=n)
        with Engine.open(idx) as engine:
            reg = Registry(idx)
            served = engine.model_version
            t = time.perf_counter()
            cand = train_candidate(engine, reg, epochs=args.epochs, interactions=log)
            t_train = time.perf_counter() - t
            t = time.perf_counter()
            ev = compare_versions(engine, cand, reg=reg)
            t_eval = time.perf_counter() - t
            if ev["better"]:
                res, lat = switch_under_load(
                    engine, lambda e=engine, r=reg, c=cand: promote_if_better(e, r, c)
                )
                sw = res["switch"]
            else:
                promote_if_better(engine, reg, cand)
                sw, lat = None, None
            last_cand = cand
        kinds = ev["kinds"]
        rows.append(
            [
                str(step),
                str(n),
                f"{rep['sync']['added']}",
                str(clicks),
                f"{rep['sync']['seconds']:.1f}",
                f"{t_train:.1f}",
                f"{t_eval:.1f}",
                f"{served} vs {cand}",
                " / ".join(f"{k} {v['current']:.3f}->{v['candidate']:.3f}" for k, v in kinds.items()),
                f"{ev['difference']:+.4f} [{ev['ci_low']:+.4f}, {ev['ci_high']:+.4f}]",
                "promoted" if sw else "rejected",
                f"{sw['seconds']:.2f} s / {sw['swap_ms']:.2f} ms" if sw else "-",
                (
                    f"{lat['before_p50_ms']:.1f} / {lat['during_p50_ms']:.1f} / {lat['during_max_ms']:.1f}"
                    f" ({lat['searches']} searches, {lat['errors']} errors)"
                )
                if lat
                else "-",
            ]
        )
        print(" | ".join(rows[-1]), flush=True)

    # the switch under load once more, whatever the verdicts were: a rollback (or serving the last
    # candidate, if nothing was promoted), which runs the same switch
    with Engine.open(idx) as engine:
        reg = Registry(idx)
        target = reg.previous_served() or last_cand
        action = "rollback" if reg.previous_served() else "promote"
        res, lat = switch_under_load(engine, lambda: switch_to(engine, target, action=action, reg=reg))
    final = (
        f"Switch under load, {action} {res['from']} -> {res['to']}: {res['seconds']:.2f} s "
        f"({res['encoded']} products encoded), searches held {res['swap_ms']:.2f} ms; search p50 "
        f"{lat['before_p50_ms']:.1f} ms before, {lat['during_p50_ms']:.1f} ms during (max "
        f"{lat['during_max_ms']:.1f} ms, {lat['searches']} searches, {lat['errors']} errors)."
    )
    header = [
        "step",
        "products",
        "added",
        "clicks",
        "sync s",
        "train s",
        "evaluate s",
        "current vs candidate",
        "held-out metrics (current -> candidate)",
        "mean diff [95% CI]",
        "verdict",
        "switch / searches held",
        "search ms p50 before / during / max during",
    ]
    body = table(rows, header) + "\n\n" + final
    print(body)
    if args.record:
        record_run("A shop over time: refresh per growth step (issue 12)", "refresh_bench.py", argv, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
