"""The promotion gate: a candidate model against the served one on the same fixed held-out queries.

Both systems are judged as the index would serve them (every signal, each model's own calibrated
fusion) with the fusion calibration's own queries and scoring (:mod:`prodsearch.search.calibration`):
attribute text queries (nDCG@10) and augmented product photos (MRR), drawn from the registry's
frozen *test* split, which no version ever trains on. The candidate's fusion is fitted on the
frozen *validation* split. The gate is a paired bootstrap over queries (Efron & Tibshirani 1993,
ch. 16; the usual test in IR, Sakai 2006): resample the queries with replacement, recompute the
mean difference; the candidate is promoted only if the lower end of the 95% interval is above the
margin (default 0), i.e. it is better by more than the queries' noise.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from prodsearch.catalog.schema import Product
from prodsearch.errors import ConfigError
from prodsearch.registry.store import Registry, now

log = logging.getLogger(__name__)

#: ``metric`` choices: the mean over the query kinds both systems can run, or one kind.
METRICS = ("mean", "text", "image")
RESAMPLES = 1000


def paired_bootstrap(
    current: Mapping[str, np.ndarray],
    candidate: Mapping[str, np.ndarray],
    *,
    resamples: int = RESAMPLES,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """Mean over query kinds of (candidate - current) per-query scores, with a percentile bootstrap
    interval. ``current[kind]`` and ``candidate[kind]`` are ``(Q_kind,)`` scores of the same queries
    in the same order; each resample draws every kind's queries with replacement (paired: one draw
    for both systems). Returns ``difference``, ``ci_low``, ``ci_high``, ``resamples``, ``confidence``."""
    kinds = sorted(current)
    if not kinds or set(kinds) != set(candidate):
        raise ValueError(
            f"both systems need the same query kinds, got {sorted(current)} and {sorted(candidate)}"
        )
    diffs = {}
    for k in kinds:
        a, b = np.asarray(current[k], np.float64), np.asarray(candidate[k], np.float64)
        if a.shape != b.shape or a.ndim != 1 or not len(a):
            raise ValueError(
                f"{k}: paired scores need equal non-empty (Q,) arrays, got {a.shape} and {b.shape}"
            )
        diffs[k] = b - a
    rng = np.random.default_rng(seed)
    boots = np.zeros(resamples)
    for k in kinds:
        d = diffs[k]
        boots += d[rng.integers(0, len(d), size=(resamples, len(d)))].mean(1)
    boots /= len(kinds)
    alpha = 1.0 - confidence
    low, high = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
    return {
        "difference": float(np.mean([diffs[k].mean() for k in kinds])),
        "ci_low": float(low),
        "ci_high": float(high),
        "resamples": int(resamples),
        "confidence": float(confidence),
    }


def split_positions(
    products: Sequence[Product], config: Mapping[str, Any], frozen: Mapping[str, str]
) -> dict[str, np.ndarray]:
    """Positions (into ``products``) of each side of the registry's stable split (``split_pairs``
    keeping ``frozen``), with the run config's fractions and seed."""
    from prodsearch.errors import CatalogError
    from prodsearch.training.data import build_pairs, split_pairs

    try:
        pairs = build_pairs(list(products), n_variants=1, min_pairs=1)
    except CatalogError:
        return {k: np.zeros(0, np.int64) for k in ("train", "val", "test")}
    split = split_pairs(
        pairs,
        float(config.get("val_fraction", 0.1)),
        float(config.get("test_fraction", 0.1)),
        int(config.get("split_seed", 0)),
        frozen=frozen,
    )
    pos = {p.id: i for i, p in enumerate(products)}
    return {k: np.sort(np.asarray([pos[pairs.ids[i]] for i in v], np.int64)) for k, v in split.items()}


def fit_fusion(
    engine: Any, products: list[Product], val: np.ndarray, *, max_queries: int = 300, seed: int = 0
) -> dict[str, Any] | None:
    """The fusion calibration of ``engine`` (a version's view) on validation positions ``val``:
    :func:`prodsearch.search.calibration.calibrate`'s fit, on the registry's split."""
    from prodsearch.search import calibration as C

    judged = C.judge(engine, products, val, max_queries=max_queries, seed=seed)
    judged = {k: j for k, j in judged.items() if len(j) >= C.MIN_QUERIES}
    if not judged:
        return None
    stats = C.signal_stats(list(judged.values()))
    weights = {kind: C.best_weights(jd, stats)[0] for kind, jd in judged.items()}
    if "text" in weights and "image" in weights:
        sigs = set(weights["text"]) | set(weights["image"])
        weights["text+image"] = {
            s: max(weights["text"].get(s, 0.0), weights["image"].get(s, 0.0)) for s in sigs
        }
    return {
        "format": C.FORMAT,
        "stats": {s: [round(m, 6), round(sd, 6)] for s, (m, sd) in stats.items()},
        "weights": weights,
        "validation": {k: {"queries": len(j), "metric": j.metric} for k, j in judged.items()},
        "split": "registry",
        "gallery": len(products),
    }


def per_query(engine: Any, judged: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Per query kind, ``(Q,)`` scores of the engine's served fusion (calibrated when the engine has a
    calibration for that kind, else RRF with its default weights), scored as calibration scores."""
    from prodsearch.search.calibration import fused_scores, signal_stats

    cal = engine.calibration or {}
    stats = {s: tuple(v) for s, v in cal.get("stats", {}).items()} or signal_stats(list(judged.values()))
    out = {}
    for kind, jd in judged.items():
        method = "calibrated" if kind in cal.get("weights", {}) else "rrf"
        out[kind] = fused_scores(jd, method, engine.fusion_weights(kind), stats)
    return out


def compare_versions(
    engine: Any,
    candidate: str,
    *,
    reg: Registry | None = None,
    metric: str = "mean",
    margin: float = 0.0,
    resamples: int = RESAMPLES,
    max_queries: int = 300,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Evaluate ``candidate`` against the version ``engine`` serves (see the module docstring); the
    result (and the candidate's fusion) is stored in the candidate's record. Builds the candidate's
    joint vectors aside (kept for its promotion). The served model is not touched."""
    from prodsearch.registry.swap import build_snapshot, check_untuned_match, load_embedder, view
    from prodsearch.search.calibration import judge

    if metric not in METRICS:
        raise ConfigError(f"metric {metric!r}: expected one of {METRICS}")
    reg = reg or Registry(engine.root)
    rec = reg.get(candidate)
    served = engine.model_version
    if served == candidate:
        raise ConfigError(f"version {candidate} is the one the index serves; nothing to compare it with")
    products = list(engine.store.iter_products())
    positions = split_positions(products, rec.config, reg.frozen_split())
    emb = load_embedder(reg, candidate, engine)
    check_untuned_match(engine, emb, candidate)
    backend = build_snapshot(engine, reg, candidate, emb, progress=progress)
    cand = view(engine, emb, backend, reg.run_dir(candidate), None)
    fusion = fit_fusion(cand, products, positions["val"], max_queries=max_queries, seed=seed)
    cand = view(engine, emb, backend, reg.run_dir(candidate), fusion)
    cur_j = judge(engine, products, positions["test"], max_queries=max_queries, seed=seed + 1)
    cand_j = judge(cand, products, positions["test"], max_queries=max_queries, seed=seed + 1)
    kinds = sorted(k for k in set(cur_j) & set(cand_j) if len(cur_j[k]) and len(cand_j[k]))
    if metric != "mean":
        if metric not in kinds:
            raise ConfigError(
                f"metric {metric!r}: no {metric} queries on the test split (available: {kinds})"
            )
        kinds = [metric]
    if not kinds:
        raise ConfigError(
            f"no held-out queries to compare on ({len(positions['test'])} test products): the catalog is too small"
        )
    cur_s, cand_s = (
        per_query(engine, {k: cur_j[k] for k in kinds}),
        per_query(cand, {k: cand_j[k] for k in kinds}),
    )
    boot = paired_bootstrap(cur_s, cand_s, resamples=resamples, seed=seed)
    evaluation = {
        "against": served,
        "metric": metric,
        "kinds": {
            k: {
                "metric": cur_j[k].metric,
                "queries": len(cur_s[k]),
                "current": round(float(cur_s[k].mean()), 4),
                "candidate": round(float(cand_s[k].mean()), 4),
            }
            for k in kinds
        },
        **{k: (round(v, 4) if isinstance(v, float) and k != "confidence" else v) for k, v in boot.items()},
        "margin": margin,
        "better": bool(boot["ci_low"] > margin),
        "split": {k: int(len(v)) for k, v in positions.items()},
        "at": now(),
    }
    rec.evaluation, rec.fusion = evaluation, fusion
    reg.save(rec)
    return evaluation


def format_evaluation(version: str, ev: Mapping[str, Any]) -> str:
    """One readable verdict: per kind, current vs candidate, and the difference with its interval."""
    lines = [
        f"{version} vs {ev['against']} on {sum(k['queries'] for k in ev['kinds'].values())} held-out queries:"
    ]
    for kind, row in ev["kinds"].items():
        lines.append(
            f"  {kind}: {row['metric']} {row['current']:.3f} -> {row['candidate']:.3f} ({row['queries']} queries)"
        )
    lines.append(
        f"  {ev['metric']} difference {ev['difference']:+.4f}, {ev['confidence']:.0%} CI "
        f"[{ev['ci_low']:+.4f}, {ev['ci_high']:+.4f}] ({ev['resamples']} paired resamples): "
        + (
            "better beyond the noise"
            if ev["better"]
            else f"not better by more than {ev['margin']:g} beyond the noise"
        )
    )
    return "\n".join(lines)
