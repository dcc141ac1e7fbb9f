from __future__ import annotations

import numpy as np
import pytest

from prodsearch.index.types import Hits, top_k


def test_hits_basics():
    h = Hits([3, 1], [0.5, 0.25])
    assert h.iids.dtype == np.int64 and h.scores.dtype == np.float32
    assert len(h) == 2 and h.to_dict() == {3: 0.5, 1: 0.25} and h.ranks() == {3: 1, 1: 2}
    assert len(Hits.empty()) == 0
    with pytest.raises(ValueError, match="same length"):
        Hits([1, 2], [0.1])


def test_top_k_sorts_and_breaks_ties_by_iid():
    iids = np.array([9, 4, 7, 2, 5])
    scores = np.array([0.1, 0.9, 0.5, 0.5, 0.5])
    assert top_k(iids, scores, 3).iids.tolist() == [4, 2, 5]  # tie at 0.5 among 7, 2, 5 -> 2, 5
    assert top_k(iids, scores, 10).iids.tolist() == [4, 2, 5, 7, 9]
    assert len(top_k(iids, scores, 0)) == 0
