"""Session recommendations (issue 12, item 5): next-click hit@10 of the recency-weighted recommender
against the average of vectors (Qdrant's ``average_vector``, the engine's ``recommend(positive=...)``),
on the held-out time window of a synthetic click log over an index.

The log is synthetic (no shop's real sessions are available here), built from the index's own
attributes (``--type-field`` x ``--colour-field`` groups of at least 8 products), one session every
minute, events a minute apart, 6 views then the click to predict:

* **drifting** sessions: 3 views in group A, then 3 in group B, the click in B (a shopper narrowing
  down or changing their mind);
* **steady** sessions: 6 views in group A with 2 of them replaced by random products (noise at random
  positions), the click in A.

The log is written as an interaction log, read back and validated by ``read_interactions``, and split
by time (``split_by_time``); each held-out session's views are the query, its click the target
(excluded from nothing: the viewed products are excluded from the answer, as recommend does).

Usage::

    prodsearch index ../shared/datasets/fashion-product-images-small/styles.csv --limit 4000 --out IDX
    python bench/session_bench.py --index IDX [--sessions 1000] [--record]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import record_run, table  # noqa: E402

T0 = 1_793_577_600.0  # 2026-11-02T00:00:00Z


def write_log(path: Path, products, type_field: str, colour_field: str, n: int, seed: int) -> None:
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for p in products:
        key = (p.attributes.get(type_field, ""), p.attributes.get(colour_field, ""))
        if all(key):
            groups[key].append(p.id)
    keys = sorted(k for k, v in groups.items() if len(v) >= 8)
    if len(keys) < 2:
        raise SystemExit(f"fewer than 2 ({type_field}, {colour_field}) groups with 8+ products")
    every = [p.id for p in products]
    rng = random.Random(seed)
    rows = []
    for s in range(n):
        kind = "drifting" if s % 2 == 0 else "steady"
        a = rng.choice(keys)
        if kind == "drifting":
            b = rng.choice([k for k in keys if k != a])
            views = rng.sample(groups[a], 3) + rng.sample(groups[b], 4)
            target_group = b
        else:
            views = rng.sample(groups[a], 7)
            for j in rng.sample(range(6), 2):
                views[j] = rng.choice(every)
            target_group = a
        events = [(pid, "view") for pid in views[:6]] + [(views[6], "click")]
        for i, (pid, ev) in enumerate(events):
            rows.append(
                {
                    "query": " ".join(target_group if (kind == "steady" or i >= 3) else a),
                    "product_id": pid,
                    "event": ev,
                    "timestamp": T0 + 60.0 * (s + i / 10),
                    "session_id": f"{kind}-{s}",
                }
            )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--sessions", type=int, default=1000)
    ap.add_argument("--holdout", type=float, default=0.3)
    ap.add_argument("--type-field", default="articleType")
    ap.add_argument("--colour-field", default="baseColour")
    ap.add_argument("--half-lives", default="1,2,4", help="recency half-lives to compare, in events")
    ap.add_argument("--work", type=Path, default=Path("/tmp/prodsearch-sessions"))
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args(argv)
    from prodsearch.interactions import read_interactions, split_by_time
    from prodsearch.search.engine import Engine

    args.work.mkdir(parents=True, exist_ok=True)
    with Engine.open(args.index) as engine:
        products = list(engine.store.iter_products())
        write_log(
            args.work / "sessions.jsonl", products, args.type_field, args.colour_field, args.sessions, 0
        )
        log = read_interactions(args.work / "sessions.jsonl", [p.id for p in products], strict=True)
        _, later = split_by_time(log, args.holdout)
        sessions: dict[str, list] = defaultdict(list)
        for e in later.events:
            sessions[e.session_id].append(e)
        held = [(sid, evs) for sid, evs in sessions.items() if len(evs) == 7 and evs[-1].event == "click"]
        systems = {"average of vectors": None} | {
            f"recency, half-life {h} events": float(h) for h in args.half_lives.split(",")
        }
        hits: dict[str, dict[str, list[float]]] = {s: defaultdict(list) for s in systems}
        secs: dict[str, list[float]] = defaultdict(list)
        for sid, evs in held:
            views, target = [e.product_id for e in evs[:-1]], evs[-1].product_id
            kind = sid.split("-")[0]
            for name, hl in systems.items():
                t = time.perf_counter()
                if hl is None:
                    resp = engine.recommend(list(dict.fromkeys(views)), k=10)
                else:
                    resp = engine.recommend(session=[{"product_id": v} for v in views], half_life=hl, k=10)
                secs[name].append(time.perf_counter() - t)
                hits[name][kind].append(float(target in [r.id for r in resp.results]))
    kinds = ["drifting", "steady"]
    rows = []
    for name in systems:
        per = [np.mean(hits[name][k]) for k in kinds]
        allv = np.mean([x for k in kinds for x in hits[name][k]])
        rows.append([name, *(f"{v:.3f}" for v in per), f"{allv:.3f}", f"{1000 * np.median(secs[name]):.1f}"])
    counts = {k: len(hits["average of vectors"][k]) for k in kinds}
    header = [
        "recommender",
        f"drifting (n={counts['drifting']})",
        f"steady (n={counts['steady']})",
        "all",
        "p50 ms",
    ]
    body = table(rows, header)
    print(log.summary())
    print(body)
    if args.record:
        note = (
            f"Next-click hit@10 on the held-out {args.holdout:.0%} (by time) of a synthetic session log over "
            f"{len(products)} products of `{args.index}` ({args.sessions} sessions: drifting = 3 views in one "
            f"({args.type_field}, {args.colour_field}) group then 3 in another, click in the second; steady = "
            "6 views in one group, 2 replaced by random products, click in it). Synthetic: it measures the "
            "mechanism on sessions whose shape is known, not real shoppers. Both through Engine.recommend "
            "(by=fused: text and photo vectors, RRF); viewed products excluded from the answer."
        )
        record_run(
            "Session recommendations: recency-weighted vs average of vectors",
            "session_bench.py",
            argv,
            note + "\n\n" + body,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
