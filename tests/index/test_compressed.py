"""Compressed vectors (``kind="ivfpq"``): recall against brute force, exact re-ranked scores, the
float32 vectors memory-mapped from the saved file (never written), write/compaction/reload semantics
identical to the exact backend, filters, and the kind recorded in the manifest and kept by the CLI.

An IVF-PQ search that probes every list and re-ranks every candidate is exact, so the semantic tests
run with ``nprobe``/``rerank`` that large and compare ids one for one with the flat backend; the
recall test runs with small ones.
"""

from __future__ import annotations

import json
from functools import partial

import numpy as np
import pytest

from cli_helpers import run_cli
from prodsearch.errors import ConfigError
from prodsearch.index.backend import FaissBackend, load_backend
from prodsearch.index.storage import file_sha256
from prodsearch.index.vector import VectorIndex, exact_search

DIM = 32
#: Compressed index settings for small test sets: the IVF-PQ path from 1,000 vectors on.
SMALL = {"kind": "ivfpq", "hnsw_threshold": 1_000, "pq_m": 8}
#: ... probing every list and re-ranking every candidate: exact, so ids compare one for one.
EXHAUSTIVE = {**SMALL, "nprobe": 10_000, "rerank": 100_000}


def clustered(rng: np.random.Generator, n: int, centres: np.ndarray, noise: float = 0.35) -> np.ndarray:
    v = centres[rng.integers(len(centres), size=n)] + noise * rng.standard_normal((n, DIM)) / np.sqrt(DIM)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(autouse=True, scope="module")
def one_faiss_thread():
    """k-means with 2 OpenMP threads on a shared 2-core machine waits on its busy peer (7x slower)."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    centres = rng.standard_normal((64, DIM))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    return clustered(rng, 4_000, centres), clustered(rng, 50, centres), centres


def recall(got, ref) -> float:
    return sum(len(set(g.iids.tolist()) & set(r.iids.tolist())) for g, r in zip(got, ref, strict=True)) / sum(
        len(r) for r in ref
    )


def test_recall_against_brute_force_with_exact_rerank_scores(data):
    vecs, queries, _ = data
    iids = np.arange(10, 10 + len(vecs), dtype=np.int64)
    index = VectorIndex(DIM, **SMALL, nprobe=4, rerank=50)
    index.add(iids, vecs)
    index.sync()
    assert index.ann_kind == "ivfpq" and index._graph.code_size == 8  # 8 bytes/vector vs 128 float32
    got = index.search(queries, 10)
    ref = exact_search(vecs, iids, queries, 10)
    # 64 tight clusters over ~250 lists: the 4 probed lists hold a query's neighbours almost always,
    # and the PQ order only has to put them among 50 candidates (measured 0.99; chance is 0.0025)
    assert recall(got, ref) >= 0.95
    for g, q in zip(got, queries, strict=True):  # scores are the exact inner products, best first
        np.testing.assert_allclose(g.scores, vecs[g.iids - 10] @ q, rtol=1e-5)
        assert np.all(np.diff(g.scores) <= 0)
    one_probe = VectorIndex(DIM, **SMALL, nprobe=1, rerank=10)
    one_probe.add(iids, vecs)
    assert recall(one_probe.search(queries, 10), ref) < recall(got, ref)  # the knobs do something


def test_small_index_searches_exactly_and_bad_settings_are_refused(data):
    vecs, queries, _ = data
    index = VectorIndex(DIM, kind="ivfpq", pq_m=8)  # below hnsw_threshold: exact
    index.add(np.arange(500), vecs[:500])
    assert index.ann_kind == "flat"
    ref = exact_search(vecs[:500], np.arange(500), queries, 5)
    assert [h.iids.tolist() for h in index.search(queries, 5)] == [r.iids.tolist() for r in ref]
    with pytest.raises(ConfigError, match="pq_m .* must divide dim 32"):
        VectorIndex(DIM, kind="ivfpq", pq_m=5)
    with pytest.raises(ConfigError, match="nprobe must be >= 1"):
        VectorIndex(DIM, kind="ivfpq", nprobe=0)
    assert VectorIndex(384, kind="ivfpq").pq_m == 48 and VectorIndex(100, kind="ivfpq").pq_m == 10


def test_save_load_round_trip_maps_the_vectors_and_never_writes_the_file(tmp_path, data):
    vecs, queries, _ = data
    iids = np.arange(len(vecs), dtype=np.int64)
    index = VectorIndex(DIM, **SMALL, nprobe=4)
    index.add(iids, vecs)
    before = index.search(queries, 10)
    folder = index.save(tmp_path, "text")
    assert isinstance(index._vecs, np.memmap)  # the saved copy serves the re-rank now
    loaded = VectorIndex.load(tmp_path, "text")
    assert isinstance(loaded._vecs, np.memmap) and loaded.params() == index.params()
    for hits in (index.search(queries, 10), loaded.search(queries, 10)):
        for a, b in zip(before, hits, strict=True):
            assert a.iids.tolist() == b.iids.tolist()
            np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(loaded.get(iids[::7]), vecs[::7])  # get() is exact, not decoded PQ

    path = folder / "text.vectors.npy"
    digest = file_sha256(path)
    rng = np.random.default_rng(0)
    loaded.add(iids[:50], clustered(rng, 50, data[2]))  # in-place updates (copy-on-write pages)
    loaded.remove(iids[100:400])  # moves tail rows into the holes
    assert file_sha256(path) == digest
    VectorIndex.load(tmp_path, "text")  # still verifies against its checksums
    assert 100 not in loaded and loaded.get([0]).shape == (1, DIM)


def truth_check(backend, flat, truth: dict[int, np.ndarray], queries, rng) -> None:
    ids = np.asarray(sorted(truth), dtype=np.int64)
    assert sorted(backend.iids.tolist()) == ids.tolist() == sorted(flat.iids.tolist())
    np.testing.assert_array_equal(backend.get(ids), np.stack([truth[i] for i in ids.tolist()]))
    for share in (None, 0.01, 0.05, 0.3, 0.8):
        allowed = None if share is None else ids[rng.random(ids.size) < share]
        got = backend.search(queries, 10, allowed=allowed)
        ref = flat.search(queries, 10, allowed=allowed)
        for g, r in zip(got, ref, strict=True):
            assert g.iids.tolist() == r.iids.tolist(), f"filter share {share}"
            np.testing.assert_allclose(g.scores, r.scores, rtol=1e-5)


def test_writes_compaction_and_reload_match_the_exact_backend(tmp_path, data):
    vecs, queries, centres = data
    rng = np.random.default_rng(11)
    backend = FaissBackend(DIM, **EXHAUSTIVE)
    flat = FaissBackend(DIM, kind="flat")
    truth: dict[int, np.ndarray] = {}
    next_iid = 0
    for step in range(8):
        new = np.arange(next_iid, next_iid + 600, dtype=np.int64)
        next_iid += 600
        changed = rng.choice(sorted(truth), size=min(40, len(truth)), replace=False) if truth else []
        ids = np.concatenate([new, np.asarray(changed, dtype=np.int64)])
        v = clustered(rng, ids.size, centres)
        for be in (backend, flat):
            be.upsert(ids, v)
        truth.update({int(i): x for i, x in zip(ids.tolist(), v, strict=True)})
        # step 5 deletes 40% of everything: the next compaction rebuilds the codes
        gone = rng.choice(sorted(truth), size=(len(truth) * 2 // 5 if step == 5 else 60), replace=False)
        assert backend.delete(gone) == flat.delete(gone) == len(gone)
        for i in gone.tolist():
            truth.pop(int(i))
        truth_check(backend, flat, truth, queries, rng)
        if step % 2 == 1:
            backend.compact()
            assert backend.main.ann_kind == "ivfpq" and backend.pending == 0
            assert backend.main._label_row[backend.main._label_row >= 0].size == len(truth)
            truth_check(backend, flat, truth, queries, rng)
        if step in (3, 5):
            backend.save(tmp_path, "text", meta={"applied_seq": step})
            backend = load_backend("faiss", tmp_path, "text")
            assert backend.main.kind == "ivfpq" and isinstance(backend.main._vecs, np.memmap)
            truth_check(backend, flat, truth, queries, rng)
    assert backend.main._graph.ntotal < next_iid  # rebuilt after the mass delete (dead codes dropped)


def test_reindexed_changes_the_kind_and_keeps_the_vectors(data):
    vecs, queries, _ = data
    flat = FaissBackend(DIM, kind="flat")
    flat.upsert(np.arange(len(vecs)), vecs)
    flat.compact()
    flat.applied_seq = 7
    comp = flat.reindexed(**EXHAUSTIVE)
    assert comp.applied_seq == 7 and comp.pending == len(vecs) and comp.params()["kind"] == "ivfpq"
    comp.compact()
    assert comp.main.ann_kind == "ivfpq"
    for a, b in zip(comp.search(queries, 10), flat.search(queries, 10), strict=True):
        assert a.iids.tolist() == b.iids.tolist()


# ---------------------------------------------------------------------- manifest, engine, CLI
def test_manifest_records_the_kind_and_reopened_engine_keeps_it(
    tmp_path, tiny_catalog, fake_embedder, tiny_mapping
):
    from prodsearch.search import layout
    from prodsearch.search.builder import build_index
    from prodsearch.search.engine import Engine
    from prodsearch.search.recipe import EmbedderRecipe

    out = tmp_path / "idx"
    kw = {
        "mapping": tiny_mapping,
        "recipe": EmbedderRecipe(text_encoder="fake-text", image_encoder="fake-image"),
        "embedder": fake_embedder,
    }
    with pytest.raises(ConfigError, match="index kind 'ivf' is unknown"):
        build_index(tiny_catalog, out, index_kind="ivf", **kw)
    assert not out.exists()  # refused before anything was written
    with pytest.raises(ConfigError, match="index_type=IVF_PQ"):  # Milvus has its own compression
        build_index(tiny_catalog, out, index_kind="ivfpq", backend=str(tmp_path / "m.db"), **kw)
    assert not out.exists()
    build_index(tiny_catalog, out, index_kind="ivfpq", **kw)
    assert layout.Manifest.load(out).settings["index_kind"] == "ivfpq"
    engine = Engine.open(out, embedder=fake_embedder)
    try:
        assert {be.params()["kind"] for be in engine.vectors.values()} == {"ivfpq"}
        assert engine.search("waterproof jacket", k=3).results[0].id == "p10"
    finally:
        engine.close()
    build_index(tiny_catalog, out, **kw)  # no kind given: the index keeps its own
    assert layout.Manifest.load(out).settings["index_kind"] == "ivfpq"
    build_index(tiny_catalog, out, index_kind="flat", **kw)  # another kind rebuilds the vectors
    engine = Engine.open(out, embedder=fake_embedder)
    try:
        assert {be.params()["kind"] for be in engine.vectors.values()} == {"flat"}
        assert len(engine.vectors["text"]) == 12
        assert engine.search("waterproof jacket", k=3).results[0].id == "p10"
    finally:
        engine.close()


def test_cli_index_kind_ivfpq(tmp_path, tiny_catalog, capsys):
    out = tmp_path / "idx"
    fake = ["--text-encoder", "fake-text", "--image-encoder", "fake-image"]
    run = partial(run_cli, capsys)
    code, stdout, _ = run("index", str(tiny_catalog), "--out", str(out), "--index-kind", "ivfpq", *fake)
    assert code == 0 and "added 12" in stdout
    assert json.loads((out / "manifest.json").read_text())["settings"]["index_kind"] == "ivfpq"
    assert json.loads((out / "vectors" / "text.json").read_text())["params"]["kind"] == "ivfpq"
    code, stdout, _ = run("search", str(out), "waterproof jacket", "-k", "3", "--json")
    assert code == 0 and json.loads(stdout)["results"][0]["id"] == "p10"
    code, _, err = run("index", str(tiny_catalog), "--out", str(out), "--index-kind", "pq", *fake)
    assert code == 2 and "index kind 'pq' is unknown" in err and "Traceback" not in err


def test_tombstones_are_skipped_by_a_live_bitmap_renewed_on_every_change(data):
    vecs, queries, _ = data
    index = VectorIndex(DIM, **SMALL)
    index.add(np.arange(len(vecs)), vecs)
    index.sync()
    ntotal = index._label_row.size
    for gone in (np.arange(0, 400), np.arange(400, 401)):
        index.remove(gone)
        index.search(queries[:2], 10)  # builds the bitmap the next searches reuse
        bits = np.unpackbits(index._live_bitmap(ntotal), bitorder="little")[:ntotal].astype(bool)
        np.testing.assert_array_equal(bits, index._label_row >= 0)
        assert not bits[: int(gone[-1]) + 1].any()
