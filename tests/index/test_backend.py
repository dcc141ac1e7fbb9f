"""FaissBackend (main + delta segments) against brute force over random write sequences, across
compactions and save/load, flat and HNSW; the registry and the protocol."""

from __future__ import annotations

import numpy as np
import pytest

from prodsearch.errors import ConfigError, ProductNotFoundError
from prodsearch.index.backend import (
    FaissBackend,
    VectorBackend,
    create_backend,
    load_backend,
)
from prodsearch.index.vector import VectorIndex, exact_search

DIM = 16


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def check_against_truth(backend, truth: dict[int, np.ndarray], rng, *, exact: bool) -> None:
    assert sorted(backend.iids.tolist()) == sorted(truth)
    assert len(backend) == len(truth)
    if not truth:
        assert backend.search(unit(rng, 1), 5)[0].iids.size == 0
        return
    ids = np.asarray(sorted(truth), dtype=np.int64)
    vecs = np.stack([truth[i] for i in ids.tolist()])
    np.testing.assert_array_equal(backend.get(ids), vecs)
    q = unit(rng, 8)
    allowed = ids[rng.random(ids.size) < 0.3]
    for flt in (None, allowed):
        got = backend.search(q, 10, allowed=flt)
        sub = ids if flt is None else allowed
        ref = exact_search(vecs[np.isin(ids, sub)], sub, q, 10)
        for g, r in zip(got, ref, strict=True):
            assert set(g.iids.tolist()) <= set(sub.tolist())  # never a deleted or filtered-out iid
            if exact:
                assert g.iids.tolist() == r.iids.tolist()
            else:
                assert len(set(g.iids.tolist()) & set(r.iids.tolist())) >= 0.8 * len(r)


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_random_writes_match_brute_force_across_compaction_and_reload(tmp_path, kind):
    rng = np.random.default_rng(7)
    backend = FaissBackend(DIM, kind=kind, hnsw_m=8, ef_search=64)
    assert isinstance(backend, VectorBackend)
    truth: dict[int, np.ndarray] = {}
    next_iid = 0
    for step in range(12):
        n_new = int(rng.integers(20, 80))
        new = np.arange(next_iid, next_iid + n_new)
        next_iid += n_new
        changed = rng.choice(sorted(truth), size=min(10, len(truth)), replace=False) if truth else []
        ids = np.concatenate([new, np.asarray(changed, dtype=np.int64)]).astype(np.int64)
        vecs = unit(rng, ids.size)
        backend.upsert(ids, vecs)
        truth.update({int(i): v for i, v in zip(ids.tolist(), vecs, strict=True)})
        gone = rng.choice(sorted(truth), size=min(15, len(truth)), replace=False)
        assert backend.delete(np.append(gone, 10**9)) == len(gone)  # an absent iid is ignored
        for i in gone.tolist():
            truth.pop(int(i))
        check_against_truth(backend, truth, rng, exact=kind == "flat")
        if step % 4 == 3:
            assert backend.pending > 0
            backend.compact()
            assert backend.pending == 0 and len(backend._segments[1]) == 0
            check_against_truth(backend, truth, rng, exact=kind == "flat")
        if step % 6 == 5:
            backend.compact()  # save persists the state as of the last compaction
            backend.save(tmp_path, "text", meta={"applied_seq": step})
            backend = load_backend("faiss", tmp_path, "text")
            assert backend.applied_seq == step
            check_against_truth(backend, truth, rng, exact=kind == "flat")
    assert backend.ann_kind == kind


def test_search_during_compaction_uses_a_consistent_pair():
    rng = np.random.default_rng(1)
    backend = FaissBackend(DIM, kind="flat")
    backend.upsert(np.arange(50), unit(rng, 50))
    before = backend._segments
    backend.compact()
    assert backend._segments is not before  # swapped, the old pair left intact for running searches
    assert len(before[1]) == 50 and len(backend._segments[1]) == 0


def test_writes_during_compaction_are_kept(monkeypatch):
    """Writes that land while the merged copy is being built stay visible after the swap."""
    rng = np.random.default_rng(3)
    backend = FaissBackend(DIM, kind="flat")
    truth = dict(zip(range(40), unit(rng, 40), strict=True))
    backend.upsert(np.arange(40), np.stack(list(truth.values())))
    backend.compact()
    backend.upsert(np.arange(40, 50), unit(rng, 10))  # pending: goes into the merge
    truth.update(zip(range(40, 50), backend.get(np.arange(40, 50)), strict=True))
    original_sync = VectorIndex.sync

    def sync_with_concurrent_writes(self):
        original_sync(self)
        if self is not backend.main:  # the merged copy: write meanwhile
            vecs = unit(rng, 3)
            backend.upsert([5, 45, 60], vecs)
            truth.update({5: vecs[0], 45: vecs[1], 60: vecs[2]})
            backend.delete([7, 48])
            truth.pop(7), truth.pop(48)

    monkeypatch.setattr(VectorIndex, "sync", sync_with_concurrent_writes)
    backend.compact()
    monkeypatch.undo()
    check_against_truth(backend, truth, rng, exact=True)
    assert backend.pending == 5 and sorted(backend._segments[1].iids.tolist()) == [5, 45, 60]


def test_bad_writes_change_nothing_and_get_names_missing():
    rng = np.random.default_rng(2)
    backend = create_backend("faiss", DIM, kind="flat")
    backend.upsert([1, 2], unit(rng, 2))
    with pytest.raises(ValueError, match="shape"):
        backend.upsert([1, 3], unit(rng, 3))
    assert sorted(backend.iids.tolist()) == [1, 2]
    with pytest.raises(ProductNotFoundError, match=r"\[7\]"):
        backend.get([1, 7])
    with pytest.raises(ConfigError, match="unknown vector backend 'nope'"):
        create_backend("nope", DIM)
