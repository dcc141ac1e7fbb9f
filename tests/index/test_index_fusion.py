"""Fusion against hand-computed tables."""

from __future__ import annotations

import numpy as np
import pytest

from prodsearch.errors import QueryError
from prodsearch.index.fusion import fuse, normalize_scores, rrf, weighted_sum
from prodsearch.index.types import Hits


def H(iids, scores=None):
    scores = scores if scores is not None else list(range(len(iids), 0, -1))
    return Hits(np.asarray(iids), np.asarray(scores, dtype=np.float32))


def test_rrf_hand_computed_with_weights():
    rankings = {"a": H([10, 20, 30]), "b": H([30, 10])}
    # k=1: 10 -> 1/2 + 1/3, 20 -> 1/3, 30 -> 1/4 + 1/2
    hits, contrib = rrf(rankings, k=1)
    assert hits.iids.tolist() == [10, 30, 20]
    np.testing.assert_allclose(hits.scores, [1 / 2 + 1 / 3, 1 / 4 + 1 / 2, 1 / 3], rtol=1e-6)
    # weight b=2: 10 -> 1/2 + 2/3 = 1.1667, 30 -> 1/4 + 2/2 = 1.25, 20 -> 1/3
    hits, contrib = rrf(rankings, {"a": 1.0, "b": 2.0}, k=1)
    assert hits.iids.tolist() == [30, 10, 20]
    np.testing.assert_allclose(hits.scores, [1.25, 1 / 2 + 2 / 3, 1 / 3], rtol=1e-6)
    assert contrib[30] == pytest.approx({"a": 0.25, "b": 1.0})
    assert contrib[20] == pytest.approx({"a": 1 / 3})
    for iid, s in zip(hits.iids.tolist(), hits.scores.tolist(), strict=True):
        assert sum(contrib[iid].values()) == pytest.approx(s, rel=1e-6)


def test_rrf_default_k_is_60_and_ties_break_by_iid():
    hits, _ = rrf({"a": H([5, 7]), "b": H([7, 5])})
    # both get 1/61 + 1/62 -> tie -> smaller iid first
    assert hits.iids.tolist() == [5, 7]
    np.testing.assert_allclose(hits.scores, [1 / 61 + 1 / 62] * 2, rtol=1e-6)


def test_rrf_zero_weight_drops_signal_and_bad_weights_raise():
    hits, contrib = rrf({"a": H([1]), "b": H([2])}, {"a": 1.0, "b": 0.0})
    assert hits.iids.tolist() == [1] and contrib == {1: pytest.approx({"a": 1 / 61})}
    with pytest.raises(QueryError, match="'b'"):
        rrf({"a": H([1]), "b": H([2])}, {"b": -1.0})
    with pytest.raises(QueryError, match="'a'"):
        weighted_sum({"a": H([1])}, {"a": float("nan")})


def test_empty_inputs_give_empty_hits():
    assert len(rrf({}).hits) == 0
    assert len(weighted_sum({"a": Hits.empty()}).hits) == 0


def test_weighted_sum_minmax_hand_computed():
    scores = {"a": H([1, 2, 3], [10, 5, 0]), "b": H([3, 4], [2, 1])}
    # a -> [1, .5, 0], b -> [1, 0]; weights a=1, b=.5: 1 -> 1, 2 -> .5, 3 -> 0 + .5, 4 -> 0
    hits, contrib = weighted_sum(scores, {"a": 1.0, "b": 0.5})
    assert hits.iids.tolist() == [1, 2, 3, 4]
    np.testing.assert_allclose(hits.scores, [1.0, 0.5, 0.5, 0.0], atol=1e-7)
    assert contrib[3] == pytest.approx({"a": 0.0, "b": 0.5})
    assert contrib[4] == pytest.approx({"b": 0.0})


def test_weighted_sum_zscore_and_raw():
    scores = {"a": H([1, 2], [3, 1]), "b": H([2, 3, 4], [4, 4, 4])}
    # a: mean 2, std 1 -> [1, -1]; b: constant -> 0
    hits, _ = weighted_sum(scores, normalize="zscore")
    assert hits.to_dict() == pytest.approx({1: 1.0, 2: -1.0, 3: 0.0, 4: 0.0})
    assert hits.iids.tolist() == [1, 3, 4, 2]
    raw, _ = weighted_sum(scores, {"a": 2.0}, normalize=None)
    assert raw.to_dict() == pytest.approx({1: 6.0, 2: 6.0, 3: 4.0, 4: 4.0})


def test_normalize_constant_and_single():
    np.testing.assert_array_equal(normalize_scores(np.array([3.0]), "minmax"), [1.0])
    np.testing.assert_array_equal(normalize_scores(np.array([2.0, 2.0]), "zscore"), [0.0, 0.0])
    with pytest.raises(QueryError, match="'max'"):
        normalize_scores(np.array([1.0]), "max")


def test_fuse_dispatch():
    r = {"a": H([1, 2]), "b": H([2])}
    assert fuse("rrf", r, k=1).hits.iids.tolist() == rrf(r, k=1).hits.iids.tolist()
    assert fuse("weighted", r).hits.to_dict() == weighted_sum(r).hits.to_dict()
    with pytest.raises(QueryError, match="'borda'"):
        fuse("borda", r)
    fused = fuse("rrf", r)
    hits, contrib = fused  # a named tuple unpacks as a pair
    assert hits is fused.hits and contrib is fused.contributions
