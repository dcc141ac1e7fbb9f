"""Fusion calibration: per query kind, how much each signal of an index counts (issue 8).

Equal-weight fusion lets a weak signal drag a strong one down (an 800-product index: hybrid
attribute nDCG@10 .576 against dense text alone .681), and a freshly trained model may help text
queries and hurt photo queries, or the reverse. So the weights are measured, not assumed:

1. **Queries with known answers, from the catalog itself**, drawn from the *validation* split of the
   training package's group-level split (a trained model's own split when the index has one, so
   its training products never calibrate it): attribute queries ("{colour} {type}", graded 2/1, the
   evaluation's ``attributes`` protocol) for text, augmented product photos (the ``image2product``
   protocol: crop, flip, downscale, JPEG -> the same product) for photos, and a held-out
   product's photo plus another colour its type comes in (the ``composed`` protocol: "like this,
   but red" -> that type in red) for text+photo queries, ranked as search serves them (within the
   photo's anchor set, search/compose.py). For these the anchor set's size is calibrated too
   (:func:`best_pool`: each size of :data:`~prodsearch.search.compose.POOLS` with its best weights).
2. Each query's per-signal candidate lists come from the engine itself
   (:meth:`Engine.signal_rankings`: what search fuses). Per signal, the mean and standard deviation
   of its values over all candidates are the score scale of calibrated fusion
   (:func:`prodsearch.index.fusion.calibrated`).
3. A grid search over weights per signal (:data:`GRID`, every combination) keeps, per query kind,
   the combination with the best mean metric (nDCG@10 for text, MRR for photos); ties go to the
   combination nearest equal weights. A signal that does not help a query kind ends with weight 0.
4. **The comparison**: the same is measured on *test*-split queries for the untuned signals alone
   (RRF as the index did before, and calibrated) and for all signals (RRF, min-max weighted sum,
   calibrated), so a trained model that makes search worse is seen and said, with its margin.

The result is stored in the index manifest (``settings["fusion"]``) and, for a trained model,
in its run folder (``calibration.json``). A catalog without type and colour fields gives no
text+photo queries; its text+photo weights are then, per signal, the larger of the text and photo
weights.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from prodsearch.catalog.schema import Product
from prodsearch.evaluation import metrics as M
from prodsearch.index.fusion import fuse, signal_values
from prodsearch.search.compose import POOLS

log = logging.getLogger(__name__)

#: Relative weights tried per signal (every combination; all-zero excluded).
GRID = (0.0, 0.25, 0.5, 1.0, 2.0)
#: Candidates per signal and query (the engine's fusion depth).
DEPTH = 200
#: Fewer calibration queries than this and the index keeps its defaults (too noisy to fit).
MIN_QUERIES = 20
#: Query draws with other seeds when one draw gives fewer than MIN_QUERIES (small catalogs).
ROUNDS = 5
#: Signals an untuned index has; "joint" is a trained model's.
UNTUNED = ("lexical", "text", "image")
FORMAT = 1


@dataclass
class Judged:
    """One query kind's calibration data: per query the candidate iids (C,), their raw values per
    signal (S, C) (NaN where the signal did not return the candidate), their grades (C,), and the
    query's ideal DCG@10 (from its grades over the whole catalog)."""

    metric: str  # "ndcg@10" or "mrr"
    signals: list[str]
    candidates: list[np.ndarray]
    values: list[np.ndarray]
    grades: list[np.ndarray]
    ideal: np.ndarray
    #: photo + text queries: each candidate's rank among the query photo's nearest products (its
    #: place in the anchor set, search/compose.py), so that smaller anchor sets can be judged too
    anchor_rank: list[np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.candidates)


# ----------------------------------------------------------------------------- pure scoring
def z_matrix(judged: Judged, stats: Mapping[str, tuple[float, float]]) -> np.ndarray:
    """``(Q, C_max, S)`` standardised values; a candidate a signal missed gets that signal's lowest
    value in the query (as :func:`~prodsearch.index.fusion.calibrated` does); padding rows -inf."""
    q, s = len(judged), len(judged.signals)
    cmax = max((len(c) for c in judged.candidates), default=0)
    z = np.full((q, cmax, s), -np.inf)
    for i, vals in enumerate(judged.values):
        n = vals.shape[1]
        for j, sig in enumerate(judged.signals):
            mu, sd = stats.get(sig, (0.0, 1.0))
            row = vals[j]
            seen = ~np.isnan(row)
            floor = row[seen].min() if seen.any() else mu
            z[i, :n, j] = (np.where(seen, row, floor) - mu) / (sd or 1.0)
    return z


def metric_of(order_grades: np.ndarray, ideal: np.ndarray, metric: str) -> np.ndarray:
    """Per query: ``order_grades`` (Q, K) grades in ranked order -> nDCG@10 or MRR (grade > 0 relevant)."""
    if metric == "mrr":
        rel = order_grades > 0
        first = np.where(rel.any(1), rel.argmax(1), -1)
        return np.where(first >= 0, 1.0 / np.maximum(first + 1, 1), 0.0)
    dcg = M.dcg_at_k(order_grades.astype(np.float64), 10)  # linear gains, as `prodsearch evaluate`
    return np.where(ideal > 0, dcg / np.where(ideal > 0, ideal, 1), 0.0)


def ideal_dcg(dense_grades: np.ndarray) -> float:
    """DCG@10 of the best possible ranking of a query whose grades over the catalog are given."""
    top = np.sort(np.asarray(dense_grades, dtype=np.float64))[::-1][:10]
    return float(M.dcg_at_k(top[None], 10)[0])


def _grade_matrix(judged: Judged) -> np.ndarray:
    cmax = max((len(c) for c in judged.candidates), default=0)
    g = np.zeros((len(judged), cmax), dtype=np.int8)
    for i, gr in enumerate(judged.grades):
        g[i, : len(gr)] = gr
    return g


def top_k_stable(fused: np.ndarray, k: int) -> np.ndarray:
    """Per row the positions of the ``k`` highest values, best first, ties in position order: the
    first ``k`` of a stable descending argsort, found by a partition (rows tied at the k-th value
    with a position left out fall back to the full sort)."""
    n = fused.shape[1]
    if k >= n:
        return np.argsort(-fused, axis=1, kind="stable")[:, :k]
    part = np.argpartition(-fused, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(fused, part, 1)
    kth = vals.min(1, keepdims=True)
    order = np.take_along_axis(part, np.lexsort((part, -vals), axis=1), 1)
    tied = (fused == kth).sum(1) > (vals == kth).sum(1)
    if tied.any():
        order[tied] = np.argsort(-fused[tied], axis=1, kind="stable")[:, :k]
    return order


def score_weights(
    z: np.ndarray,
    grades: np.ndarray,
    ideal: np.ndarray,
    w: np.ndarray,
    metric: str,
    prepared: tuple[np.ndarray, np.ndarray] | None = None,
) -> float:
    """Mean metric of calibrated fusion with weights ``w`` (S,) over all queries (vectorised).
    ``prepared``: :func:`prepare` of ``z``, when many weights are scored on the same ``z``."""
    z0, pad = prepared if prepared is not None else prepare(z)
    fused = z0 @ w
    fused[pad] = -np.inf
    k = min(fused.shape[1], 10 if metric != "mrr" else DEPTH)
    # stable order: higher score first, then the candidate's position (lists are in iid order)
    order = top_k_stable(fused, k)
    return float(metric_of(np.take_along_axis(grades, order, 1), ideal, metric).mean())


def prepare(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``z`` with padding set to 0 (contiguous, for a matrix product) and the padding mask (Q, C)."""
    return np.ascontiguousarray(np.where(np.isinf(z), 0.0, z)), np.isinf(z[..., 0])


def best_weights(
    judged: Judged, stats: Mapping[str, tuple[float, float]], grid: Sequence[float] = GRID
) -> tuple[dict[str, float], float]:
    """The grid combination with the best mean metric (ties: least weight on trained signals, then
    nearest to equal weights)."""
    z, grades = z_matrix(judged, stats), _grade_matrix(judged)
    prepared = prepare(z)
    best: tuple[float, float, tuple[float, ...]] | None = None
    for combo in itertools.product(grid, repeat=len(judged.signals)):
        w = np.asarray(combo, dtype=np.float64)
        if w.max() <= 0 or (w.max() < max(grid)):  # scale-free: keep each direction once
            continue
        m = score_weights(z, grades, judged.ideal, w, judged.metric, prepared)
        spread = float(np.abs(w / w.max() - 1.0).sum())
        # ties go to the least weight on a trained signal (learning must not make search worse
        # where the queries cannot tell), then to the weights nearest equal
        trained = sum(float(v) / w.max() for s, v in zip(judged.signals, w, strict=True) if s not in UNTUNED)
        key = (round(m, 9), -trained, -spread, combo)
        if best is None or key[:3] > best[:3]:
            best = key
    assert best is not None
    w = {s: float(v) / max(grid) for s, v in zip(judged.signals, best[3], strict=True)}
    return w, best[0]


def fused_metric(judged: Judged, method: str, weights: Mapping[str, float], stats: Mapping) -> float:
    """Mean metric of ``fuse(method, ...)`` over the queries: the reference (non-vectorised) path,
    used for RRF / min-max baselines and to check :func:`score_weights`."""
    scores = fused_scores(judged, method, weights, stats)
    return float(scores.mean()) if len(scores) else 0.0


def fused_scores(judged: Judged, method: str, weights: Mapping[str, float], stats: Mapping) -> np.ndarray:
    """Per query ``(Q,)``: the metric of ``fuse(method, ...)`` (see :func:`fused_metric`)."""
    from prodsearch.index.types import Hits

    vals = []
    for cand, v, gr, ideal in zip(judged.candidates, judged.values, judged.grades, judged.ideal, strict=True):
        grade_of = dict(zip(cand.tolist(), gr.tolist(), strict=True))
        lists = {}
        for j, sig in enumerate(judged.signals):
            if weights.get(sig, 0) <= 0:
                continue
            seen = ~np.isnan(v[j])
            ids, raw = cand[seen], v[j][seen]
            order = np.lexsort((ids, -raw))
            # values were stored through signal_values (lexical / list max); fusion applies it again,
            # which leaves a list whose best value is 1 unchanged
            lists[sig] = Hits(ids[order], raw[order])
        if not lists:
            vals.append(0.0)
            continue
        fused = fuse(method, lists, dict(weights), stats=stats).hits
        top = np.asarray(
            [grade_of[i] for i in fused.iids.tolist()[: (10 if judged.metric != "mrr" else DEPTH)]]
        )
        vals.append(float(metric_of(top[None], np.asarray([ideal]), judged.metric)[0]) if len(top) else 0.0)
    return np.asarray(vals, dtype=np.float64)


def signal_stats(judged: Sequence[Judged]) -> dict[str, tuple[float, float]]:
    """Mean and standard deviation of each signal's values over every candidate of every query."""
    pooled: dict[str, list[np.ndarray]] = {}
    for jd in judged:
        for v in jd.values:
            for j, sig in enumerate(jd.signals):
                row = v[j][~np.isnan(v[j])]
                if row.size:
                    pooled.setdefault(sig, []).append(row)
    out = {}
    for sig, rows in pooled.items():
        allv = np.concatenate(rows)
        out[sig] = (float(allv.mean()), float(allv.std() or 1.0))
    return out


# ----------------------------------------------------------------------------- queries
def _positions(products: Sequence[Product], params: Any, which: str) -> np.ndarray:
    from prodsearch.errors import CatalogError
    from prodsearch.training.data import build_pairs, split_pairs

    try:
        pairs = build_pairs(list(products), n_variants=1, min_pairs=1)
    except CatalogError:
        return np.zeros(0, dtype=np.int64)
    split = split_pairs(pairs, params.val_fraction, params.test_fraction, params.seed)
    ids = {pairs.ids[i] for i in split[which]}
    return np.asarray([i for i, p in enumerate(products) if p.id in ids], dtype=np.int64)


def judge(
    engine: Any,
    products: list[Product],
    positions: np.ndarray,
    *,
    max_queries: int = 300,
    seed: int = 0,
    signals: Sequence[str] | None = None,
) -> dict[str, Judged]:
    """Attribute (text), augmented-photo (image) and photo + colour word (text+image) queries from
    ``positions`` of ``products``, with every signal's candidates from ``engine``. Query kinds that
    cannot be built are left out."""
    from prodsearch.evaluation.corpus import Corpus
    from prodsearch.evaluation.fields import resolve_fields
    from prodsearch.evaluation.protocols import (
        ProtocolSkipped,
        attribute_queries,
        composed_queries,
        image_queries,
    )

    corpus = Corpus(products, test=np.asarray(positions, dtype=np.int64))
    fields = resolve_fields(products)
    iid_of = dict(zip([p.id for p in products], engine.store.iid_of([p.id for p in products]), strict=True))
    pos_of_iid = {iid: i for i, iid in enumerate(iid_of[p.id] for p in products)}
    builders = {
        "text": (attribute_queries, "ndcg@10"),
        "image": (image_queries, "mrr"),
        "text+image": (composed_queries, "ndcg@10"),
    }
    out: dict[str, Judged] = {}
    for kind, (build, metric) in builders.items():
        if kind != "text" and "image" not in engine.vectors:
            continue
        # a small split gives few queries: draw again with other seeds (other augmentations of the
        # same held-out photos, other attribute phrases) until MIN_QUERIES, up to ROUNDS draws
        rounds, seen_text = [], set()
        for r in range(ROUNDS):
            try:
                qs = build(corpus, fields, max_queries=max_queries, seed=seed + 1000 * r)
            except ProtocolSkipped as err:
                log.info("calibration: no %s queries (%s)", kind, err)
                break
            keep = [qi for qi in range(len(qs)) if kind != "text" or qs.queries[qi].lower() not in seen_text]
            seen_text.update(qs.queries[qi].lower() for qi in keep if kind == "text")
            rounds += [(qs, qi) for qi in keep]
            if len(rounds) >= min(max_queries, MIN_QUERIES) and (r > 0 or len(qs) >= MIN_QUERIES):
                break
        items = [(qs.queries[qi], qs.judgements[0].qrels.dense(qi)) for qs, qi in rounds[:max_queries]]
        jd = judge_queries(engine, kind, metric, items, pos_of_iid, signals)
        if jd is not None:
            out[kind] = jd
    return out


def judge_queries(
    engine: Any,
    kind: str,
    metric: str,
    items: Sequence[tuple[Any, np.ndarray]],
    pos_of_iid: Mapping[int, int],
    signals: Sequence[str] | None = None,
) -> Judged | None:
    """:class:`Judged` of ``items`` (query, dense grades over the products at ``pos_of_iid``'s
    positions) with every signal's candidates from ``engine``; ``None`` without any query.
    A text+image query is a ``(text, photo)`` pair, ranked within its photo's largest anchor set
    tried (:data:`~prodsearch.search.compose.POOLS`)."""
    from prodsearch.search.compose import anchor_set

    ranked, anchors = [], []
    for query, dense in items:
        if kind == "text+image":  # the largest anchor set tried; within_pool gives the smaller ones
            ranks = engine.signal_rankings(
                text=query[0], image=query[1], depth=DEPTH, anchor=True, anchor_pool=max(POOLS)
            )
            anchors.append(anchor_set(engine, query[1], None, max(POOLS)))
        else:
            ranks = engine.signal_rankings(
                **({"text": query} if kind == "text" else {"image": query}), depth=DEPTH
            )
        ranked.append(({s: h for s, h in ranks.items() if signals is None or s in signals}, dense))
    # every signal any query reached (a signal that found nothing for one query is NaN there)
    names = sorted({s for ranks, _ in ranked for s in ranks})
    cands, vals, grades, ideals, anchor_rank = [], [], [], [], []
    for qi, (ranks, dense) in enumerate(ranked):
        ids = np.unique(
            np.concatenate([np.asarray(h.iids) for h in ranks.values()] or [np.zeros(0, np.int64)])
        )
        ids = np.asarray([i for i in ids.tolist() if i in pos_of_iid], dtype=np.int64)
        v = np.full((len(names), len(ids)), np.nan)
        col = {i: c for c, i in enumerate(ids.tolist())}
        for j, s in enumerate(names):
            h = ranks.get(s)
            if h is None or not len(h.iids):
                continue
            sv = signal_values(s, np.asarray(h.scores))
            for iid, x in zip(np.asarray(h.iids).tolist(), sv.tolist(), strict=True):
                if iid in col:
                    v[j, col[iid]] = x
        cands.append(ids)
        vals.append(v)
        grades.append(dense[[pos_of_iid[i] for i in ids.tolist()]].astype(np.int8))
        ideals.append(ideal_dcg(dense) if metric != "mrr" else 1.0)
        if anchors:  # every candidate was ranked within the anchor set (the same search again)
            place = {int(i): r for r, i in enumerate(anchors[qi].tolist())}
            last = len(place)  # not found again (an approximate index): beyond every size tried
            anchor_rank.append(np.asarray([place.get(i, last) for i in ids.tolist()], dtype=np.int64))
    if not names or not cands:
        return None
    return Judged(
        metric, names, cands, vals, grades, np.asarray(ideals, dtype=np.float64), anchor_rank or None
    )


def merge(a: Judged | None, b: Judged | None) -> Judged | None:
    """The queries of both (same metric; signals as ``a``'s, those ``b`` lacks are NaN there)."""
    if a is None or b is None:
        return a or b
    names = sorted(set(a.signals) | set(b.signals))

    def widen(jd: Judged) -> list[np.ndarray]:
        out = []
        for v in jd.values:
            w = np.full((len(names), v.shape[1]), np.nan)
            for j, s in enumerate(jd.signals):
                w[names.index(s)] = v[j]
            out.append(w)
        return out

    if (a.anchor_rank is None) != (b.anchor_rank is None):
        raise ValueError("cannot merge photo + text queries with queries of another kind")
    return Judged(
        a.metric, names, a.candidates + b.candidates, widen(a) + widen(b), a.grades + b.grades,
        np.concatenate([a.ideal, b.ideal]),
        None if a.anchor_rank is None else a.anchor_rank + (b.anchor_rank or []),
    )  # fmt: skip


def judge_interactions(engine: Any, products: list[Product], events: Sequence[Any]) -> dict[str, Judged]:
    """Text and photo queries of shoppers' events, graded by event
    (:func:`prodsearch.interactions.signals.judged_queries`), with every signal's candidates."""
    from prodsearch.interactions.signals import judged_queries

    iids = engine.store.iid_of([p.id for p in products])
    pos_of_iid = {int(iid): i for i, iid in enumerate(iids)}
    pos_of_id = {p.id: i for i, p in enumerate(products)}
    out: dict[str, Judged] = {}
    for kind, metric in (("text", "ndcg@10"), ("image", "mrr")):
        if kind == "image" and "image" not in engine.vectors:
            continue
        items = []
        for jq in judged_queries(events):
            if jq.kind != kind:
                continue
            dense = np.zeros(len(products), dtype=np.int8)
            for pid, g in jq.grades.items():
                if pid in pos_of_id:
                    dense[pos_of_id[pid]] = g
            if dense.any():
                items.append((jq.query, dense))
        jd = judge_queries(engine, kind, metric, items, pos_of_iid)
        if jd is not None:
            out[kind] = jd
    return out


# ----------------------------------------------------------------------------- the procedure
def split_params_for(engine: Any) -> Any:
    """The split of the index's trained model (its run folder), else the training defaults."""
    from prodsearch.evaluation.corpus import SplitParams

    run = engine.manifest.model_run
    params = SplitParams.from_run(run) if run and not str(run).startswith(("clip:", "hf-clip:")) else None
    return params or SplitParams()


def calibrate(
    engine: Any,
    *,
    max_queries: int = 300,
    seed: int = 0,
    save: bool = True,
    interactions: Sequence[Any] | None = None,
) -> dict[str, Any] | None:
    """Fit the index's fusion (see the module docstring); store it in the manifest when ``save``.

    ``interactions``: shoppers' events of a held-out time window (:mod:`prodsearch.interactions`);
    their queries, graded by event, join the validation queries of their kind, so that signals whose
    help shows only on real shoppers' queries (a model trained on their clicks, ``popularity``) are
    weighed by it.

    Returns the calibration dict, or ``None`` when the catalog gives fewer than
    :data:`MIN_QUERIES` validation queries of every kind (the index keeps RRF with equal weights).
    """
    products = list(engine.store.iter_products())
    params = split_params_for(engine)
    val = judge(engine, products, _positions(products, params, "val"), max_queries=max_queries, seed=seed)
    shoppers = judge_interactions(engine, products, interactions) if interactions else {}
    val = {k: merge(val.get(k), shoppers.get(k)) for k in sorted(set(val) | set(shoppers))}
    val = {k: j for k, j in val.items() if len(j) >= MIN_QUERIES}
    if not val:
        log.info("calibration skipped: fewer than %d validation queries", MIN_QUERIES)
        return None
    # one score scale per signal, from its candidate lists for text and photo queries: photo + text
    # candidates lie inside anchor sets, a narrower sample that would shift the others' fusion
    stats = signal_stats([j for k, j in val.items() if k != "text+image"] or list(val.values()))
    weights: dict[str, dict[str, float]] = {}
    untuned_weights: dict[str, dict[str, float]] = {}
    fitted: dict[str, float] = {}
    pool, pool_metrics = None, {}
    if "text+image" in val and val["text+image"].anchor_rank is not None:
        pool, pool_metrics = best_pool(val["text+image"], stats)
        val["text+image"] = within_pool(val["text+image"], pool)
    for kind, jd in val.items():
        weights[kind], fitted[kind] = best_weights(jd, stats)
        plain = restrict(jd, UNTUNED)
        if plain.signals and plain.signals != jd.signals:
            untuned_weights[kind], _ = best_weights(plain, stats)
    if "text+image" not in weights and "text" in weights and "image" in weights:
        sigs = set(weights["text"]) | set(weights["image"])
        weights["text+image"] = {
            s: max(weights["text"].get(s, 0.0), weights["image"].get(s, 0.0)) for s in sigs
        }
    result: dict[str, Any] = {
        "format": FORMAT,
        "stats": {s: [round(m, 6), round(sd, 6)] for s, (m, sd) in stats.items()},
        "weights": weights,
        "untuned_weights": untuned_weights,
        "validation": {
            k: {"queries": len(j), "metric": j.metric, "calibrated": round(fitted[k], 4)}
            for k, j in val.items()
        },
        "split": vars(params),
        "gallery": len(products),
        **({"anchor_pool": pool, "anchor_pools_tried": pool_metrics} if pool else {}),
        "interaction_queries": {k: len(j) for k, j in shoppers.items()},
    }
    result["comparison"] = compare(engine, products, params, result, max_queries=max_queries, seed=seed)
    if save:
        engine.manifest.settings["fusion"] = result
        engine._save_manifest()
        run = engine.manifest.model_run
        if run and Path(run).is_dir():
            from prodsearch.paths import atomic_write_text

            atomic_write_text(Path(run) / "calibration.json", json.dumps(result, indent=2))
    return result


def compare(
    engine: Any, products: list[Product], params: Any, cal: dict[str, Any], *, max_queries: int, seed: int
) -> dict[str, Any]:
    """Test-split metrics of the fusions side by side (the module docstring's step 4); with a trained
    signal, also the served (calibrated) fusion's ``gain`` over the better untuned fusion and its 95%
    paired-bootstrap interval ``gain_ci`` over the queries."""
    from prodsearch.registry.evaluate import paired_bootstrap

    test = judge(
        engine, products, _positions(products, params, "test"), max_queries=max_queries, seed=seed + 1
    )
    stats = {s: tuple(v) for s, v in cal["stats"].items()}
    out: dict[str, Any] = {}
    for kind, jd in test.items():
        if len(jd) == 0:
            continue
        if kind == "text+image" and cal.get("anchor_pool"):  # every fusion within the served anchor set
            jd = within_pool(jd, cal["anchor_pool"])
        untuned = [s for s in jd.signals if s in UNTUNED]
        equal_all = dict.fromkeys(jd.signals, 1.0)
        equal_untuned = dict.fromkeys(untuned, 1.0)
        plain_weights = cal.get("untuned_weights", {}).get(kind) or cal["weights"].get(kind, equal_untuned)
        plain = {
            "untuned_rrf": fused_scores(jd, "rrf", equal_untuned, stats),
            "untuned_calibrated": fused_scores(
                jd, "calibrated", {s: w for s, w in plain_weights.items() if s in untuned}, stats
            ),
        }
        served = fused_scores(jd, "calibrated", cal["weights"].get(kind, equal_all), stats)
        row: dict[str, Any] = {
            "metric": jd.metric,
            "queries": len(jd),
            "gallery": len(products),
            **{k: float(v.mean()) for k, v in plain.items()},
            "rrf": fused_metric(jd, "rrf", equal_all, stats),
            "weighted_minmax": fused_metric(jd, "weighted", equal_all, stats),
            "calibrated": float(served.mean()),
        }
        for s in jd.signals:
            row[f"only_{s}"] = fused_metric(jd, "calibrated", {s: 1.0}, stats)
        if len(untuned) < len(jd.signals):  # a trained signal: its gain over the better untuned fusion
            base = max(plain.values(), key=lambda v: float(v.mean()))
            boot = paired_bootstrap({kind: base}, {kind: served}, seed=seed)
            row["gain"] = boot["difference"]
            row["gain_ci"] = [round(boot["ci_low"], 4), round(boot["ci_high"], 4)]
        out[kind] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}
    return out


def format_weights(weights: dict[str, float]) -> str:
    """One query kind's fusion weights as ``signal=weight, ...`` (signals sorted)."""
    return ", ".join(f"{s}={w:g}" for s, w in sorted(weights.items()))


def comparison_table(
    comparison: dict[str, dict[str, Any]], digits: int = 3
) -> tuple[list[str], list[list[str]]]:
    """``compare``'s rows as one table: ``(header, rows)``, a row per query kind. Columns a kind lacks
    (``only_image`` for text queries, ``gain`` on an untuned index) read "-"; ``gain_ci`` reads
    "[low, high]"."""
    fixed = ("metric", "queries", "gallery")
    cols: list[str] = []
    for row in comparison.values():
        cols += [k for k in row if k not in (*fixed, *cols)]

    def cell(value: Any) -> str:
        if isinstance(value, (list, tuple)):
            return "[" + ", ".join(f"{v:+.{digits}f}" for v in value) + "]"
        return f"{value:.{digits}f}"

    rows = [
        [kind, str(row["metric"]), str(row["queries"]), str(row["gallery"])]
        + [cell(row[c]) if c in row else "-" for c in cols]
        for kind, row in comparison.items()
    ]
    return ["query kind", *fixed, *cols], rows


def format_comparison(cal: dict[str, Any]) -> str:
    """The calibration's weights and test-split comparison as a short table."""
    lines = []
    for kind, w in cal.get("weights", {}).items():
        lines.append(f"fusion weights for {kind} queries: " + format_weights(w))
    if cal.get("anchor_pool"):
        sizes = sorted((cal.get("anchor_pools_tried") or {}).items(), key=lambda nm: int(nm[0]))
        tried = ", ".join(f"{n}: {m:.3f}" for n, m in sizes)
        lines.append(
            f"photo + text queries re-rank the photo's {cal['anchor_pool']} nearest products"
            + (f" (validation nDCG@10 per size tried: {tried})" if tried else "")
        )
    for kind, row in (cal.get("comparison") or {}).items():
        cols = [k for k in row if k not in ("metric", "queries", "gallery", "gain", "gain_ci")]
        lines.append(
            f"{kind} queries, {row['metric']} on {row['queries']} test queries (gallery {row['gallery']}): "
            + ", ".join(f"{k} {row[k]:.3f}" for k in cols)
        )
        if "gain" in row:
            low, high = row["gain_ci"]
            lines.append(
                f"  trained vs untuned ({kind} queries): {row['gain']:+.3f} (95% interval {low:+.3f} to {high:+.3f})"
            )
    return "\n".join(lines)


def restrict(judged: Judged, signals: Sequence[str]) -> Judged:
    """The same queries with only ``signals``; candidates that only the others returned are dropped
    (fusion would never see them)."""
    keep = [j for j, s in enumerate(judged.signals) if s in signals]
    cands, vals, grades, ranks = [], [], [], []
    for i, (c, v, g) in enumerate(zip(judged.candidates, judged.values, judged.grades, strict=True)):
        found = ~np.isnan(v[keep]).all(0) if keep else np.zeros(len(c), bool)
        cands.append(c[found])
        vals.append(v[keep][:, found])
        grades.append(g[found])
        if judged.anchor_rank is not None:
            ranks.append(judged.anchor_rank[i][found])
    return Judged(
        judged.metric, [judged.signals[j] for j in keep], cands, vals, grades, judged.ideal, ranks or None
    )


def within_pool(judged: Judged, n: int) -> Judged:
    """Photo + text queries judged within a larger anchor set, restricted to each query's
    candidates among its photo's ``n`` nearest products (its anchor set of size ``n``)."""
    if judged.anchor_rank is None:
        raise ValueError("within_pool needs photo + text queries (judged with their anchor sets)")
    cands, vals, grades, ranks = [], [], [], []
    for c, v, g, r in zip(judged.candidates, judged.values, judged.grades, judged.anchor_rank, strict=True):
        keep = r < n
        cands.append(c[keep])
        vals.append(v[:, keep])
        grades.append(g[keep])
        ranks.append(r[keep])
    return Judged(judged.metric, list(judged.signals), cands, vals, grades, judged.ideal, ranks)


def best_pool(
    judged: Judged, stats: Mapping[str, tuple[float, float]], pools: Sequence[int] = POOLS
) -> tuple[int, dict[str, float]]:
    """The anchor-set size (of ``pools``) whose best weights score highest on photo + text queries
    judged within the largest set (ties: the smaller set, faster to search); with every size's
    score. Sizes beyond every query's candidates are the largest one's and are not tried."""
    most = max((int(r.max()) + 1 for r in judged.anchor_rank or [] if len(r)), default=0)
    tried: dict[int, float] = {}
    for n in sorted(pools):
        tried[n] = round(best_weights(within_pool(judged, n), stats)[1], 4)
        if n >= most:
            break
    best = max(tried, key=lambda n: (tried[n], -n))
    return best, {str(n): m for n, m in tried.items()}


def verdict(cal: dict[str, Any] | None, margin: float = 0.005) -> list[str]:
    """Lines warning where the index's fusion with every signal loses to its untuned signals alone
    (query kinds where a trained signal takes part: an untuned index has nothing to warn about)."""
    lines = []
    for kind, row in ((cal or {}).get("comparison") or {}).items():
        if "gain" not in row:
            continue
        base = max(row.get("untuned_rrf", 0.0), row.get("untuned_calibrated", 0.0))
        if row.get("calibrated", 0.0) < base - margin:
            lines.append(
                f"{kind} queries: the trained model's fusion scores {row['metric']} {row['calibrated']:.3f} "
                f"< untuned {base:.3f} (by {base - row['calibrated']:.3f}, {row['queries']} test queries, "
                f"gallery {row['gallery']}"
                + (
                    f"; 95% interval of the gain {row['gain_ci'][0]:+.3f} to {row['gain_ci'][1]:+.3f})"
                    if "gain_ci" in row
                    else ")"
                )
            )
    return lines


__all__ = [
    "calibrate",
    "compare",
    "comparison_table",
    "format_weights",
    "verdict",
    "best_weights",
    "best_pool",
    "within_pool",
    "score_weights",
    "restrict",
    "fused_scores",
]
