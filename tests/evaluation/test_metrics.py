"""Metrics against hand-computed values (ties, no relevant item, graded relevance) and against ranx."""

from __future__ import annotations

import math

import numpy as np
import pytest

from prodsearch.evaluation import metrics as M
from prodsearch.evaluation.qrels import ExplicitQrels, gain_matrix
from prodsearch.evaluation.systems import exact_topk

# q0: relevant at ranks 2 and 4, 3 relevant in all; q1: relevant at rank 1 only; q2: nothing relevant exists
GAINS = np.array([[0, 1, 0, 1, 0], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0]])
N_REL = np.array([3, 1, 0])


def test_recall_precision_hit_by_hand():
    r1 = M.recall_at_k(GAINS, N_REL, 1)
    assert r1[:2].tolist() == [0.0, 1.0] and math.isnan(r1[2])
    assert M.recall_at_k(GAINS, N_REL, 2)[0] == pytest.approx(1 / 3)
    assert M.recall_at_k(GAINS, N_REL, 5)[0] == pytest.approx(2 / 3)
    assert M.precision_at_k(GAINS, 2).tolist() == [0.5, 0.5, 0.0]
    assert M.precision_at_k(GAINS, 10).tolist() == [0.2, 0.1, 0.0]  # short list: missing ranks are misses
    assert M.hit_at_k(GAINS, N_REL, 1)[:2].tolist() == [0.0, 1.0]
    assert M.hit_at_k(GAINS, N_REL, 2)[:2].tolist() == [1.0, 1.0]


def test_mrr_and_ap_by_hand():
    rr = M.reciprocal_rank(GAINS, N_REL)
    assert rr[:2].tolist() == [0.5, 1.0] and math.isnan(rr[2])
    assert M.reciprocal_rank(GAINS, N_REL, k=1)[0] == 0.0  # first relevant (rank 2) is past the cutoff
    ap = M.average_precision(GAINS, N_REL)
    assert ap[0] == pytest.approx((1 / 2 + 2 / 4) / 3)
    assert ap[1] == 1.0 and math.isnan(ap[2])
    assert M.average_precision(GAINS, N_REL, k=3)[0] == pytest.approx((1 / 2) / 3)


def test_no_relevant_item_is_skipped_by_the_mean():
    assert M.mean(M.recall_at_k(GAINS, N_REL, 5)) == pytest.approx((2 / 3 + 1) / 2)
    assert M.mean(M.precision_at_k(GAINS, 5)) == pytest.approx((0.4 + 0.2 + 0.0) / 3)
    assert math.isnan(M.mean(np.array([np.nan, np.nan])))


def test_ndcg_graded_by_hand():
    # retrieved grades [2, 0, 1]; the judged documents have grades {2, 2, 1}
    gains = np.array([[2, 0, 1]])
    ideal = np.array([[2, 2, 1]])
    dcg = 2 / 1 + 0 + 1 / 2
    idcg = 2 / 1 + 2 / math.log2(3) + 1 / 2
    assert M.ndcg_at_k(gains, ideal, 3)[0] == pytest.approx(dcg / idcg)
    assert M.ndcg_at_k(gains, ideal, 1)[0] == pytest.approx(1.0)
    assert M.ndcg_at_k(np.array([[1, 2]]), np.array([[2, 1]]), 2)[0] == pytest.approx(
        (1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3))
    )
    assert math.isnan(M.ndcg_at_k(np.array([[0, 0]]), np.array([[0, 0]]), 2)[0])


def test_ties_are_broken_by_smaller_position_and_scored_accordingly():
    vectors = np.array([[0.5], [0.9], [0.9], [0.1]], np.float32)
    positions = np.array([10, 7, 3, 1])
    ranked = exact_topk(np.array([[1.0]], np.float32), vectors, positions, 3)
    assert ranked.tolist() == [[3, 7, 10]]
    gains, n_rel, ideal = gain_matrix(ranked, ExplicitQrels([{7: 1}], n_docs=11))
    assert gains.tolist() == [[0, 1, 0]]
    assert M.reciprocal_rank(gains, n_rel)[0] == 0.5
    padded = exact_topk(np.array([[1.0]], np.float32), vectors, positions, 6)
    assert padded.tolist() == [[3, 7, 10, 1, -1, -1]]


def test_gain_matrix_ideal_and_eligibility():
    qrels = ExplicitQrels([{0: 2, 3: 1, 4: 2}, {}], n_docs=5)
    ranked = np.array([[3, 1, -1], [0, 1, 2]])
    gains, n_rel, ideal = gain_matrix(ranked, qrels)
    assert gains.tolist() == [[1, 0, 0], [0, 0, 0]]
    assert n_rel.tolist() == [3, 0]
    assert ideal.tolist() == [[2, 2, 1], [0, 0, 0]]
    _, n_rel2, _ = gain_matrix(ranked, qrels, rel_level=2)
    assert n_rel2.tolist() == [2, 0]
    eligible = np.array([True, True, True, True, False])
    _, n_rel3, ideal3 = gain_matrix(ranked, qrels, eligible=eligible)
    assert n_rel3.tolist() == [2, 0] and ideal3[0].tolist() == [2, 1, 0]


def test_metric_specs():
    assert M.parse_metric("ndcg@10") == ("ndcg", 10)
    assert M.parse_metric("mrr") == ("mrr", None)
    with pytest.raises(ValueError, match="recall@10"):
        M.parse_metric("recal@10")
    with pytest.raises(ValueError, match="needs a cutoff"):
        M.parse_metric("recall")


def test_classification_by_hand():
    # true: 0 0 0 1 1 2 ; pred: 0 0 1 1 2 2
    conf = M.confusion_matrix([0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2], 3)
    assert conf.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert M.accuracy(conf) == pytest.approx(4 / 6)
    # per class F1: c0 P=1 R=2/3 -> 0.8; c1 P=1/2 R=1/2 -> 0.5; c2 P=1/2 R=1 -> 2/3
    assert M.f1_per_class(conf).tolist() == pytest.approx([0.8, 0.5, 2 / 3])
    assert M.weighted_f1(conf) == pytest.approx((3 * 0.8 + 2 * 0.5 + 1 * 2 / 3) / 6)
    # a class never predicted nor present gets F1 0 and weight 0
    assert M.weighted_f1(M.confusion_matrix([0, 1], [0, 1], 3)) == 1.0


def _random_case(seed: int):
    rng = np.random.default_rng(seed)
    n_docs, depth = 40, 20
    judgements, runs, ranked = [], {}, []
    for q in range(25):
        docs = rng.choice(n_docs, size=rng.integers(1, 8), replace=False)
        judgements.append({int(d): int(rng.integers(1, 4)) for d in docs})
        order = rng.permutation(n_docs)[: rng.integers(5, depth + 1)]
        ranked.append(order)
        runs[f"q{q:02d}"] = {f"d{d}": float(depth - r) for r, d in enumerate(order)}
    qrels = {f"q{q:02d}": {f"d{d}": g for d, g in j.items()} for q, j in enumerate(judgements)}
    padded = np.full((25, depth), -1)
    for q, r in enumerate(ranked):
        padded[q, : len(r)] = r
    return judgements, ranked, qrels, runs, padded, n_docs


def _reference(spec: str, judged: dict[int, int], ranked: list[int]) -> float:
    """Textbook definitions over plain Python lists (independent of the vectorised code)."""
    name, k = M.parse_metric(spec)
    top = ranked[:k] if k else ranked
    rel = [d for d in top if judged.get(d, 0) >= 1]
    if name == "recall":
        return len(rel) / len(judged)
    if name == "precision":
        return len(rel) / k
    if name == "hit":
        return float(bool(rel))
    if name == "mrr":
        return next((1 / (i + 1) for i, d in enumerate(top) if judged.get(d, 0) >= 1), 0.0)
    if name in ("ap", "map"):
        hits, total = 0, 0.0
        for i, d in enumerate(top):
            if judged.get(d, 0) >= 1:
                hits += 1
                total += hits / (i + 1)
        return total / len(judged)
    dcg = sum(judged.get(d, 0) / math.log2(i + 2) for i, d in enumerate(top))
    best = sorted(judged.values(), reverse=True)[:k]
    return dcg / sum(g / math.log2(i + 2) for i, g in enumerate(best))


SPECS = ["recall@5", "recall@20", "precision@10", "hit@3", "mrr", "map@10", "ap", "ndcg@10", "ndcg@5"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_reference_definitions(seed):
    judgements, ranked, _, _, padded, n_docs = _random_case(seed)
    gains, n_rel, ideal = gain_matrix(padded, ExplicitQrels(judgements, n_docs))
    for spec in SPECS:
        ours = M.compute(spec, gains, n_rel, ideal)
        ref = [_reference(spec, j, r.tolist()) for j, r in zip(judgements, ranked, strict=True)]
        assert ours == pytest.approx(ref, abs=1e-12), spec


@pytest.mark.slow  # ranx JIT-compiles its kernels on first use (~40 s)
def test_against_ranx_on_random_cases():
    ranx = pytest.importorskip("ranx")
    judgements, ranked, qrels, runs, padded, n_docs = _random_case(0)
    gains, n_rel, ideal = gain_matrix(padded, ExplicitQrels(judgements, n_docs))
    for spec, ranx_name in [
        ("recall@5", "recall@5"),
        ("recall@20", "recall@20"),
        ("precision@10", "precision@10"),
        ("hit@3", "hit_rate@3"),
        ("mrr", "mrr"),
        ("map@10", "map@10"),
        ("ap", "map"),
        ("ndcg@10", "ndcg@10"),
        ("ndcg@5", "ndcg@5"),
    ]:
        ours = M.compute(spec, gains, n_rel, ideal)
        ref = ranx.evaluate(ranx.Qrels(qrels), ranx.Run(runs), ranx_name, return_mean=False)
        assert ours == pytest.approx(np.asarray(ref), abs=1e-9), spec
