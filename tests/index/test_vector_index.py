"""VectorIndex against brute force: flat is exact, HNSW recall, filtered search, updates, deletes, persistence."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from prodsearch.errors import ConfigError, IndexNotFoundError, ProductNotFoundError, QueryError
from prodsearch.index import storage
from prodsearch.index.vector import VectorIndex, exact_search

DIM = 32


def unit(rng: np.random.Generator, n: int, d: int = DIM) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    vecs = unit(rng, 5000)
    iids = (np.arange(5000) * 7 + 3).astype(np.int64)  # non-contiguous ids
    queries = unit(rng, 50)
    return vecs, iids, queries


@pytest.fixture(scope="module")
def hnsw(data):
    vecs, iids, _ = data
    vi = VectorIndex(DIM, kind="hnsw")
    vi.add(iids, vecs)
    vi.sync()
    return vi


def assert_scores_match_stored_vectors(vi, queries, got):
    """Every hit's score must be the inner product with the vector stored under its iid."""
    for q, h in zip(queries, got, strict=True):
        if len(h):
            np.testing.assert_allclose(h.scores, vi.get(h.iids) @ q, atol=1e-5)


def recall(got, ref):
    return np.mean(
        [
            len(set(g.iids.tolist()) & set(r.iids.tolist())) / max(1, len(r))
            for g, r in zip(got, ref, strict=True)
        ]
    )


def test_exact_search_hand_computed():
    vecs = np.array([[1, 0], [0, 1], [0.6, 0.8]], np.float32)
    (h,) = exact_search(vecs, [10, 11, 12], np.array([[0.8, 0.6]], np.float32), 2)
    assert h.iids.tolist() == [12, 10]
    np.testing.assert_allclose(h.scores, [0.96, 0.8], rtol=1e-6)


def test_flat_equals_brute_force(data):
    vecs, iids, queries = data
    vi = VectorIndex(DIM, kind="flat")
    vi.add(iids, vecs)
    got, ref = vi.search(queries, 10), exact_search(vecs, iids, queries, 10)
    for g, r in zip(got, ref, strict=True):
        assert g.iids.tolist() == r.iids.tolist()
        np.testing.assert_allclose(g.scores, r.scores, rtol=1e-5)
    assert vi.ann_kind == "flat" and len(vi) == 5000 and int(iids[5]) in vi and 4 not in vi


@pytest.mark.parametrize("share", [0.01, 0.2, 0.6])  # gathers vectors / gathers scores
def test_flat_filtered_equals_exact_on_allowed(data, share):
    vecs, iids, queries = data
    vi = VectorIndex(DIM, kind="flat")
    vi.add(iids, vecs)
    pick = np.sort(np.random.default_rng(4).choice(5000, int(5000 * share), replace=False))
    got = vi.search(queries[:10], 10, allowed=iids[pick])
    ref = exact_search(vecs[pick], iids[pick], queries[:10], 10)
    assert [g.iids.tolist() for g in got] == [r.iids.tolist() for r in ref]


def test_hnsw_recall_at_10(data, hnsw):
    vecs, iids, queries = data
    got = hnsw.search(queries, 10)
    assert hnsw.ann_kind == "hnsw" and all(len(h) == 10 for h in got)
    assert recall(got, exact_search(vecs, iids, queries, 10)) >= 0.95


def test_auto_switches_at_threshold(data):
    vecs, iids, queries = data
    vi = VectorIndex(DIM, kind="auto", hnsw_threshold=1000)
    vi.add(iids[:999], vecs[:999])
    vi.search(queries[:1], 5)
    assert vi.ann_kind == "flat" and vi._graph is None
    vi.add(iids[999:1000], vecs[999:1000])
    vi.search(queries[:1], 5)
    assert vi.ann_kind == "hnsw" and vi._graph is not None
    vi.remove(iids[:10])
    vi.search(queries[:1], 5)
    assert vi.ann_kind == "flat" and vi._graph is None


def test_filtered_search_1_percent_equals_exact_on_allowed(data, hnsw):
    vecs, iids, queries = data
    pick = np.random.default_rng(1).choice(5000, 50, replace=False)
    got = hnsw.search(queries, 10, allowed=iids[pick])
    ref = exact_search(vecs[pick], iids[pick], queries, 10)
    for g, r in zip(got, ref, strict=True):
        assert g.iids.tolist() == r.iids.tolist()


@pytest.mark.parametrize("share", [0.01, 0.3])
def test_filtered_graph_path_stays_inside_allowed_and_returns_k(data, share):
    """Force the graph walk (no exact shortcut): results must be allowed, k of them, and near exact."""
    vecs, iids, queries = data
    vi = VectorIndex(DIM, kind="hnsw", exact_fraction=0.0, exact_min=0)
    vi.add(iids, vecs)
    pick = np.random.default_rng(2).choice(5000, int(5000 * share), replace=False)
    got = vi.search(queries, 10, allowed=iids[pick])
    allowed = set(iids[pick].tolist())
    assert all(len(h) == 10 and set(h.iids.tolist()) <= allowed for h in got)
    assert recall(got, exact_search(vecs[pick], iids[pick], queries, 10)) >= 0.95


def test_allowed_ids_not_in_index_are_ignored(data, hnsw):
    _, iids, queries = data
    got = hnsw.search(queries[:2], 10, allowed=np.array([iids[0], 999_999_999]))
    assert [h.iids.tolist() for h in got] == [[iids[0]], [iids[0]]]
    assert [len(h) for h in hnsw.search(queries[:2], 10, allowed=np.array([-5]))] == [0, 0]


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_update_replaces_vector(data, kind):
    vecs, iids, _ = data
    vi = VectorIndex(DIM, kind=kind)
    vi.add(iids[:1000], vecs[:1000])
    vi.sync()
    target = int(iids[10])
    new = vecs[4000:4001]
    vi.add([target], new)
    assert len(vi) == 1000
    np.testing.assert_array_equal(vi.get([target]), new)
    (h,) = vi.search(new, 3)
    assert h.iids[0] == target and h.scores[0] == pytest.approx(1.0, abs=1e-5)
    assert_scores_match_stored_vectors(vi, vecs[:20], vi.search(vecs[:20], 10))
    (h,) = vi.search(vecs[10:11], 1000)  # the old vector is gone: its best match is no longer itself at 1.0
    assert h.to_dict()[target] < 0.99 and len(h) == 1000 and len(set(h.iids.tolist())) == 1000


@pytest.mark.parametrize("removed_share", [0.1, 0.9])  # 0.1 marks graph labels dead, 0.9 triggers a rebuild
def test_removed_ids_never_returned_and_k_still_filled(data, removed_share):
    vecs, iids, queries = data
    vi = VectorIndex(DIM, kind="hnsw")
    vi.add(iids, vecs)
    vi.sync()
    gone = np.random.default_rng(3).choice(5000, int(5000 * removed_share), replace=False)
    assert vi.remove(np.concatenate([iids[gone], [-1, -2]])) == gone.size  # absent ids are ignored
    keep = np.setdiff1d(np.arange(5000), gone)
    assert len(vi) == keep.size and set(vi.iids.tolist()) == set(iids[keep].tolist())
    got = vi.search(queries, 10)
    assert (vi._dead > 0) == (removed_share < vi.rebuild_ratio)  # marked dead vs rebuilt lazily
    bad = set(iids[gone].tolist())
    assert all(len(h) == 10 and not (set(h.iids.tolist()) & bad) for h in got)
    assert recall(got, exact_search(vecs[keep], iids[keep], queries, 10)) >= 0.95
    np.testing.assert_array_equal(vi.get(iids[keep[:20]]), vecs[keep[:20]])  # rows moved by compaction
    # new vectors reuse the freed rows; graph labels must still point at the right rows
    vi.add(np.arange(10**6, 10**6 + 300), unit(np.random.default_rng(5), 300))
    probe = np.concatenate([vecs[keep[-50:]], queries])
    got = vi.search(probe, 10)
    assert_scores_match_stored_vectors(vi, probe, got)
    assert np.mean([h.iids[0] == i for h, i in zip(got[:50], iids[keep[-50:]], strict=False)]) >= 0.95


def test_fewer_live_than_k_returns_all_live(data):
    vecs, iids, queries = data
    vi = VectorIndex(DIM, kind="hnsw")
    vi.add(iids[:100], vecs[:100])
    vi.sync()
    vi.remove(iids[:95])
    got = vi.search(queries[:3], 10)
    assert all(sorted(h.iids.tolist()) == sorted(iids[95:100].tolist()) for h in got)


@pytest.mark.parametrize(
    "iids", [[-5, 10**12, 3, 7], [0, 1, 2, 3]]
)  # sparse ids (binary search) / dense table
def test_any_int64_iids(data, iids):
    vecs = data[0][:4]
    vi = VectorIndex(DIM, kind="flat")
    vi.add(iids, vecs)
    assert all(i in vi for i in iids) and 4 not in vi and -1 not in vi and 10**13 not in vi
    np.testing.assert_array_equal(vi.get(iids[::-1]), vecs[::-1])
    (h,) = vi.search(vecs[1], 4, allowed=[iids[1], iids[2], 10**15, -99])
    assert h.iids[0] == iids[1] and sorted(h.iids.tolist()) == sorted([iids[1], iids[2]])
    assert vi.remove([iids[1], 123456]) == 1
    (h,) = vi.search(vecs[1], 4)
    assert sorted(h.iids.tolist()) == sorted([iids[0], iids[2], iids[3]])


def test_errors_at_the_boundary(data):
    vecs, iids, _ = data
    vi = VectorIndex(DIM)
    with pytest.raises(ValueError, match=r"\(2, 32\)"):
        vi.add(iids[:2], vecs[:2, :8])
    with pytest.raises(ValueError, match="duplicate"):
        vi.add([1, 1], vecs[:2])
    with pytest.raises(ValueError, match="non-finite"):
        vi.add([1], np.full((1, DIM), np.nan, np.float32))
    vi.add(iids[:5], vecs[:5])
    with pytest.raises(QueryError, match="32"):
        vi.search(np.zeros((1, 8), np.float32), 3)
    with pytest.raises(QueryError, match="k must"):
        vi.search(vecs[:1], 0)
    with pytest.raises(ProductNotFoundError, match="12345"):
        vi.get([iids[0], 12345])
    with pytest.raises(ConfigError, match="'ivf'"):
        VectorIndex(DIM, kind="ivf")
    assert [len(h) for h in VectorIndex(DIM).search(vecs[:2], 3)] == [0, 0]


# ---------------------------------------------------------------------------- persistence
@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_save_load_round_trip(tmp_path, data, kind):
    vecs, iids, queries = data
    vi = VectorIndex(DIM, kind=kind, ef_search=64)
    vi.add(iids[:2000], vecs[:2000])
    vi.sync()
    vi.remove(iids[:100])  # save with dead graph labels
    vi.save(tmp_path, "text")
    meta = json.loads((tmp_path / "text.json").read_text())
    assert meta["dim"] == DIM and meta["count"] == 1900 and meta["params"]["ef_search"] == 64
    assert (tmp_path / meta["generation"] / "text.vectors.npy").is_file()
    assert (tmp_path / meta["generation"] / "text.faiss").is_file() == (kind == "hnsw")
    back = VectorIndex.load(tmp_path, "text")
    assert back.kind == kind and back.ef_search == 64 and len(back) == 1900
    for a, b in zip(vi.search(queries, 10), back.search(queries, 10), strict=True):
        assert a.iids.tolist() == b.iids.tolist()
    np.testing.assert_array_equal(back.get(iids[100:200]), vecs[100:200])
    back.add(iids[2000:2100], vecs[2000:2100])  # a loaded index keeps working
    back.remove(iids[100:150])
    assert len(back) == 1950 and not (
        set(iids[100:150].tolist()) & set(back.search(vecs[100:150], 5)[0].iids.tolist())
    )


def _saved(tmp_path, data, n):
    vecs, iids, _ = data
    vi = VectorIndex(DIM, kind="flat")
    vi.add(iids[:n], vecs[:n])
    vi.save(tmp_path, "image")
    return vi


def test_crash_while_writing_files_keeps_previous_index(tmp_path, data, monkeypatch):
    vecs, iids, _ = data
    vi = _saved(tmp_path, data, 100)
    vi.add(iids[100:300], vecs[100:300])
    calls = []
    real_save = np.save

    def flaky_save(path, arr, *a, **k):
        calls.append(path)
        if len(calls) > 1:
            raise OSError("disk full (simulated)")
        return real_save(path, arr, *a, **k)

    monkeypatch.setattr(np, "save", flaky_save)
    with pytest.raises(OSError, match="simulated"):
        vi.save(tmp_path, "image")
    monkeypatch.undo()
    assert len(calls) == 2
    back = VectorIndex.load(tmp_path, "image")
    assert len(back) == 100 and set(back.iids.tolist()) == set(iids[:100].tolist())
    assert not [p for p in os.listdir(tmp_path) if "tmp" in p]  # the failed generation was cleaned up


def test_crash_before_pointer_swap_keeps_previous_index(tmp_path, data, monkeypatch):
    vecs, iids, _ = data
    vi = _saved(tmp_path, data, 100)
    vi.add(iids[100:300], vecs[100:300])

    def crash(*a, **k):
        raise OSError("power cut (simulated)")

    monkeypatch.setattr(storage, "atomic_write_text", crash)  # dies after the new folder is complete
    with pytest.raises(OSError, match="simulated"):
        vi.save(tmp_path, "image")
    monkeypatch.undo()
    assert len(VectorIndex.load(tmp_path, "image")) == 100
    first = json.loads((tmp_path / "image.json").read_text())["generation"]
    vi.save(tmp_path, "image")  # the next save succeeds
    assert len(VectorIndex.load(tmp_path, "image")) == 300
    second = json.loads((tmp_path / "image.json").read_text())["generation"]
    # kept: the new generation and the one the pointer named before; the orphan of the failed save is gone
    assert sorted(p for p in os.listdir(tmp_path) if ".gen-" in p) == sorted([first, second])
    vi.save(tmp_path, "image")
    third = json.loads((tmp_path / "image.json").read_text())["generation"]
    assert sorted(p for p in os.listdir(tmp_path) if ".gen-" in p) == sorted([second, third])


def test_corrupt_files_give_clear_errors(tmp_path, data):
    _saved(tmp_path, data, 100)
    meta = json.loads((tmp_path / "image.json").read_text())
    vec_file = tmp_path / meta["generation"] / "image.vectors.npy"
    raw = bytearray(vec_file.read_bytes())
    raw[-5] ^= 0xFF
    vec_file.write_bytes(bytes(raw))
    with pytest.raises(IndexNotFoundError, match=r"image\.vectors\.npy.*checksum"):
        VectorIndex.load(tmp_path, "image")
    vec_file.write_bytes(bytes(raw[:-4]))
    with pytest.raises(IndexNotFoundError, match=r"image\.vectors\.npy.*bytes"):
        VectorIndex.load(tmp_path, "image")
    (tmp_path / "image.json").write_text("{oops")
    with pytest.raises(IndexNotFoundError, match=r"image\.json.*JSON"):
        VectorIndex.load(tmp_path, "image")
    with pytest.raises(IndexNotFoundError, match=r"text\.json"):
        VectorIndex.load(tmp_path, "text")


def test_count_mismatch_is_caught_without_checksums(tmp_path, data):
    _saved(tmp_path, data, 100)
    meta = json.loads((tmp_path / "image.json").read_text())
    meta["count"] = 99
    (tmp_path / "image.json").write_text(json.dumps(meta))
    with pytest.raises(IndexNotFoundError, match=r"image\.vectors\.npy.*\(99, 32\)"):
        VectorIndex.load(tmp_path, "image", verify=False)
