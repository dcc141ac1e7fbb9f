"""Fusion calibration: the vectorised grid search equals fusing query by query, a noise signal gets
weight 0, and a calibrated index uses its weights by default (issue 8)."""

from __future__ import annotations

import numpy as np
import pytest

from prodsearch.search.calibration import (
    Judged,
    best_weights,
    comparison_table,
    format_comparison,
    fused_metric,
    restrict,
    score_weights,
    signal_stats,
    top_k_stable,
    verdict,
    z_matrix,
)
from prodsearch.search.calibration import _grade_matrix as grade_matrix


def toy_judged(metric: str, n_queries: int = 40, seed: int = 0) -> Judged:
    """Per query 30 candidates; 'good' scores track the grade, 'noise' is random, each signal misses
    a few candidates (NaN) as real candidate lists do."""
    rng = np.random.default_rng(seed)
    cands, vals, grades, ideal = [], [], [], []
    for _ in range(n_queries):
        c = np.sort(rng.choice(1000, 30, replace=False))
        g = np.zeros(30, np.int8)
        g[rng.choice(30, 3, replace=False)] = 2 if metric != "mrr" else 1
        good = 0.3 + 0.2 * g + rng.normal(0, 0.08, 30)
        noise = rng.uniform(0.2, 0.9, 30)
        v = np.stack([good, noise])
        v[0, rng.choice(30, 3, replace=False)] = np.nan
        v[1, rng.choice(30, 3, replace=False)] = np.nan
        cands.append(c)
        vals.append(v)
        grades.append(g)
        ideal.append(float(np.sum([2 / np.log2(i + 2) for i in range(3)])))
    return Judged(metric, ["good", "noise"], cands, vals, grades, np.asarray(ideal))


@pytest.mark.parametrize("metric", ["ndcg@10", "mrr"])
def test_vectorised_scoring_equals_query_by_query_fusion(metric):
    jd = toy_judged(metric)
    stats = signal_stats([jd])
    z, g = z_matrix(jd, stats), grade_matrix(jd)
    for w in ({"good": 1.0, "noise": 0.0}, {"good": 1.0, "noise": 1.0}, {"good": 0.25, "noise": 1.0}):
        fast = score_weights(z, g, jd.ideal, np.asarray([w["good"], w["noise"]]), metric)
        ref = fused_metric(jd, "calibrated", w, stats)
        assert fast == pytest.approx(ref, abs=1e-9)


def test_top_k_by_partition_equals_the_stable_full_sort():
    rng = np.random.default_rng(3)
    # coarse values make ties everywhere, at the k-th place too; -inf is padding
    fused = rng.integers(0, 6, size=(300, 40)).astype(np.float64)
    fused[rng.random(fused.shape) < 0.2] = -np.inf
    for k in (1, 10, 39, 40, 55):
        ref = np.argsort(-fused, axis=1, kind="stable")[:, :k]
        assert np.array_equal(top_k_stable(fused, k), ref), k
    smooth = rng.normal(size=(50, 4000))
    assert np.array_equal(top_k_stable(smooth, 10), np.argsort(-smooth, axis=1, kind="stable")[:, :10])


def test_noise_signal_gets_zero_weight():
    jd = toy_judged("ndcg@10", n_queries=60, seed=1)
    weights, best = best_weights(jd, signal_stats([jd]))
    assert weights == {"good": 1.0, "noise": 0.0}
    stats = signal_stats([jd])
    assert best > fused_metric(jd, "rrf", {"good": 1.0, "noise": 1.0}, stats)


def test_restrict_drops_candidates_only_other_signals_found():
    jd = toy_judged("mrr", n_queries=3)
    only = restrict(jd, ["good"])
    for v, c, full in zip(only.values, only.candidates, jd.values, strict=True):
        assert v.shape == (1, len(c)) and not np.isnan(v).all(0).any()
        assert len(c) == int((~np.isnan(full[0])).sum())


def test_comparison_table_has_a_column_per_key_and_marks_what_a_kind_lacks():
    comparison = {
        "image": {
            "metric": "mrr",
            "queries": 50,
            "gallery": 900,
            "calibrated": 0.7,
            "only_image": 0.5,
            "gain": -0.12,
            "gain_ci": [-0.2, -0.05],
        },
        "text": {"metric": "ndcg@10", "queries": 40, "gallery": 900, "calibrated": 0.66},
    }
    header, rows = comparison_table(comparison)
    assert header == [
        "query kind",
        "metric",
        "queries",
        "gallery",
        "calibrated",
        "only_image",
        "gain",
        "gain_ci",
    ]
    assert rows == [
        ["image", "mrr", "50", "900", "0.700", "0.500", "-0.120", "[-0.200, -0.050]"],
        ["text", "ndcg@10", "40", "900", "0.660", "-", "-", "-"],
    ]


def test_format_comparison_names_weights_metrics_and_the_gain():
    cal = {
        "weights": {"image": {"joint": 0.5, "image": 1.0}},
        "comparison": {
            "image": {
                "metric": "mrr",
                "queries": 50,
                "gallery": 900,
                "calibrated": 0.7,
                "gain": 0.1,
                "gain_ci": [0.05, 0.15],
            },
        },
    }
    assert format_comparison(cal).splitlines() == [
        "fusion weights for image queries: image=1, joint=0.5",
        "image queries, mrr on 50 test queries (gallery 900): calibrated 0.700",
        "  trained vs untuned (image queries): +0.100 (95% interval +0.050 to +0.150)",
    ]


def test_verdict_warns_with_the_margin():
    cal = {
        "comparison": {
            "image": {
                "metric": "mrr",
                "queries": 50,
                "gallery": 900,
                "untuned_rrf": 0.80,
                "untuned_calibrated": 0.82,
                "calibrated": 0.70,
                "gain": -0.12,
                "gain_ci": [-0.2, -0.05],
            },
            "text": {
                "metric": "ndcg@10",
                "queries": 50,
                "gallery": 900,
                "untuned_rrf": 0.60,
                "untuned_calibrated": 0.61,
                "calibrated": 0.66,
            },
            # an index without a trained signal: its calibrated fusion below RRF is not a model's loss
            "text+image": {
                "metric": "ndcg@10",
                "queries": 50,
                "gallery": 900,
                "untuned_rrf": 0.30,
                "untuned_calibrated": 0.28,
                "calibrated": 0.28,
            },
        }
    }
    lines = verdict(cal)
    assert len(lines) == 1 and lines[0].startswith("image queries") and "by 0.120" in lines[0]
    assert "95% interval of the gain -0.200 to -0.050" in lines[0]


@pytest.fixture(scope="module")
def calibrated_engine(tmp_path_factory):
    from fakes import fake_embedder, write_colour_catalog
    from prodsearch.search.builder import build_index
    from prodsearch.search.calibration import calibrate
    from prodsearch.search.engine import Engine

    root = tmp_path_factory.mktemp("cal")
    write_colour_catalog(root, 260)
    emb = fake_embedder()
    build_index(root / "catalog.csv", root / "idx", embedder=emb)
    with Engine.open(root / "idx", embedder=emb) as engine:
        cal = calibrate(engine, max_queries=60)
    engine = Engine.open(root / "idx", embedder=emb)
    yield engine, cal
    engine.close()


def test_calibration_is_stored_and_drives_the_default_fusion(calibrated_engine):
    engine, cal = calibrated_engine
    assert cal is not None and set(cal["weights"]) >= {"text", "image"}
    assert engine.calibration["weights"] == cal["weights"]  # persisted in the manifest
    assert all(row["gallery"] == 260 for row in cal["comparison"].values())
    default = engine.search("red shirt", k=10)
    explicit = engine.search("red shirt", k=10, fusion="calibrated")
    assert [r.id for r in default.results] == [r.id for r in explicit.results]
    w = engine.fusion_weights("text")
    assert default.signals == sorted(s for s in ("lexical", "text", "image") if w.get(s, 0) > 0)
    # the comparison on test queries never loses to equal-weight RRF by more than noise
    for row in cal["comparison"].values():
        assert row["calibrated"] >= row["rrf"] - 0.05


def test_photo_plus_colour_queries_are_calibrated_as_search_serves_them(calibrated_engine):
    """Photo + colour word queries get weights and an anchor-set size fitted on their own validation
    queries, and the calibration ranks each of them exactly as search serves it: within the photo's
    anchor set of that size (or another, restricted from the largest one judged), fused with the
    stored weights and scales (the same-photo pin aside)."""
    from prodsearch.evaluation.corpus import Corpus
    from prodsearch.evaluation.fields import resolve_fields
    from prodsearch.evaluation.protocols import composed_queries
    from prodsearch.index.fusion import fuse
    from prodsearch.index.types import Hits
    from prodsearch.search.calibration import MIN_QUERIES, _positions, judge, split_params_for, within_pool

    engine, cal = calibrated_engine
    assert cal["validation"]["text+image"]["queries"] >= MIN_QUERIES
    assert cal["comparison"]["text+image"]["metric"] == "ndcg@10"
    tried = cal["anchor_pools_tried"]  # {size: validation nDCG@10 with that size's best weights}
    assert tried[str(cal["anchor_pool"])] == max(tried.values())
    products = list(engine.store.iter_products())
    test = _positions(products, split_params_for(engine), "test")
    judged = judge(engine, products, test, max_queries=12, seed=7)["text+image"]
    qs = composed_queries(Corpus(products, test=test), resolve_fields(products), max_queries=12, seed=7)
    assert len(judged) == len(qs) == 12
    weights = {s: w for s, w in engine.fusion_weights("text+image").items() if w > 0}
    stats = {s: tuple(v) for s, v in cal["stats"].items()}
    for pool in (None, 30):  # the calibrated size (search's default), and a smaller one asked for
        jd = within_pool(judged, pool or cal["anchor_pool"])
        assert all(len(c) <= (pool or cal["anchor_pool"]) for c in jd.candidates)
        for (text, photo), cand, vals in zip(qs.queries, jd.candidates, jd.values, strict=True):
            lists = {}
            for j, sig in enumerate(jd.signals):
                seen = ~np.isnan(vals[j])
                if sig in weights and seen.any():
                    order = np.lexsort((cand[seen], -vals[j][seen]))
                    lists[sig] = Hits(cand[seen][order], vals[j][seen][order])
            fused, _ = fuse("calibrated", lists, weights, stats=stats)
            judged_top = [p.id for p in engine.store.by_iids(fused.iids[:10].tolist())]
            served = engine.search(text, image=photo, k=12, explain=True, anchor_pool=pool).results
            served_top = [r.id for r in served if "same_photo" not in r.explanation.contributions][:10]
            assert served_top == judged_top, (pool, text, photo)
