"""Readers during writes see one consistent index: no errors, no 404, no product whose delete was
acknowledged before the search began; and store, vectors and lexical index hold the same products
after random sequences of writes, compactions and reopens."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from prodsearch.catalog.schema import Product
from prodsearch.index.lexical import LexicalIndex
from prodsearch.index.vector import exact_search
from prodsearch.search.engine import Engine

COLOURS = ["red", "blue", "green", "yellow", "black", "white"]


def product(i: int, rng: np.random.Generator, photo: str | None = None) -> Product:
    colour = COLOURS[int(rng.integers(len(COLOURS)))]
    return Product(
        id=f"n{i}",
        title=f"{colour} item {int(rng.integers(5))} shirt",
        text={"description": f"model {i}"},
        attributes={"colour": colour, "category": "shirt", "gender": "men", "price": "10"},
        image_path=photo,
        image_hash="h" + photo if photo else None,
    )


def test_searches_during_writes_and_compaction_never_fail_or_show_deleted(tiny_engine):
    engine = tiny_engine
    rng = np.random.default_rng(0)
    deleted: set[str] = set()  # ids whose delete was acknowledged
    lock = threading.Lock()
    stop = threading.Event()
    errors: list[BaseException] = []
    seen = {"searches": 0}

    def reader(kind: int) -> None:
        while not stop.is_set():
            with lock:
                gone_before = set(deleted)
            try:
                if kind == 0:
                    resp = engine.search("red shirt", k=20, explain=True, facets=True)
                elif kind == 1:
                    resp = engine.search("shirt", k=20, filters={"gender": "men"}, mode="lexical")
                else:
                    resp = engine.similar("p03", k=20)
            except BaseException as err:  # noqa: BLE001 - any failure is the finding
                errors.append(err)
                return
            got = {r.id for r in resp.results}
            if got & gone_before:
                errors.append(AssertionError(f"deleted products returned: {sorted(got & gone_before)}"))
                return
            seen["searches"] += 1

    threads = [threading.Thread(target=reader, args=(i % 3,)) for i in range(3)]
    for t in threads:
        t.start()
    try:
        originals = ["p01", "p02", "p05", "p06", "p12"]
        for i in range(60):
            engine.upsert([product(i, rng)])
            if i >= 3:
                engine.delete([f"n{i - 3}"])
                with lock:
                    deleted.add(f"n{i - 3}")
            if i % 12 == 5 and originals:
                pid = originals.pop()
                engine.delete([pid])
                with lock:
                    deleted.add(pid)
            if i == 30:
                engine.compact()
            time.sleep(0.002)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[:3]
    assert seen["searches"] > 20


def assert_congruent(engine: Engine) -> None:
    products = {p.id: p for p in engine.store.iter_products()}
    iid = dict(zip(products, engine.store.iid_of(list(products)), strict=True))
    live = set(iid.values())
    assert set(engine.vectors["text"].iids.tolist()) == live
    with_photo = {iid[p] for p, prod in products.items() if prod.image_path}
    assert set(engine.vectors["image"].iids.tolist()) == with_photo
    assert set(engine.lexical.iids.tolist()) == live
    assert set(engine._attr_iids[engine._attrs.live()].tolist()) == live


@pytest.mark.parametrize("seed", [1, 2])
def test_random_write_sequences_keep_components_congruent(tiny_index, fake_embedder, tiny_catalog, seed):
    rng = np.random.default_rng(seed)
    photos = sorted(str(p) for p in (tiny_catalog.parent / "images").glob("*.jpg"))
    engine = Engine.open(tiny_index, embedder=fake_embedder)
    try:
        for _ in range(25):
            op = rng.random()
            ids = [p.id for p in engine.store.iter_products()]
            if op < 0.5 or len(ids) < 3:
                batch = [
                    product(
                        int(rng.integers(40)),
                        rng,
                        photos[int(rng.integers(len(photos)))] if rng.random() < 0.5 else None,
                    )
                    for _ in range(int(rng.integers(1, 4)))
                ]
                batch = list({p.id: p for p in batch}.values())
                engine.upsert(batch)
            elif op < 0.8:
                engine.delete(list(rng.choice(ids, size=int(rng.integers(1, 3)), replace=False)))
            elif op < 0.9:
                engine.compact()
            else:
                engine.close()
                engine = Engine.open(tiny_index, embedder=fake_embedder)
            assert_congruent(engine)
        # after a compaction, lexical scores equal a fresh BM25 build and vector search is exact
        engine.compact()
        assert engine.lexical.pending == 0 and all(v.pending == 0 for v in engine.vectors.values())
        docs = {p.id: p.full_text() for p in engine.store.iter_products()}
        iids = engine.store.iid_of(list(docs))
        fresh = LexicalIndex()
        fresh.build(iids, list(docs.values()))
        for q in ("red shirt", "item 3", "model 7 blue"):
            a, b = engine.lexical.search(q, 50), fresh.search(q, 50)
            assert a.iids.tolist() == b.iids.tolist()
            np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5)
        be = engine.vectors["text"]
        q = fake_embedder.encode_text(["red shirt"])
        ref = exact_search(be.get(be.iids), be.iids, q, 5)[0]
        assert be.search(q, 5)[0].iids.tolist() == ref.iids.tolist()
    finally:
        engine.close()


def test_delta_documents_scored_with_main_statistics():
    """Before a compaction a new document scores as BM25 with the main segment's statistics."""
    import math

    lx = LexicalIndex()
    lx.build([1, 2, 3], ["red shirt", "blue shirt shirt", "red"])
    lx.add([4], ["green shirt"])
    lx.remove([3])
    h = lx.search("shirt", 10)
    idf = math.log(1 + 1.5 / 2.5)  # N=3, df=2 as in the main segment
    d4 = idf * 1 / (1.5 * (0.25 + 0.75 * 2 / 2) + 1)
    assert dict(zip(h.iids.tolist(), h.scores.tolist(), strict=True))[4] == pytest.approx(d4, rel=1e-5)
    assert 3 not in lx.search("red", 10).iids.tolist()
    assert lx.pending == 2
    lx.compact()
    assert lx.pending == 0 and sorted(lx.iids.tolist()) == [1, 2, 4]


@pytest.mark.parametrize("other_compacts", [False, True], ids=["other wrote", "other wrote and compacted"])
def test_writer_catches_up_with_another_writer(tiny_index, fake_embedder, other_compacts):
    """An engine opened before another one wrote (and maybe compacted the log away) applies those
    writes before its own, so memory matches disk; the other holds the write lock meanwhile."""
    from prodsearch.errors import IndexNotFoundError

    rng = np.random.default_rng(3)
    b = Engine.open(tiny_index, embedder=fake_embedder)
    a = Engine.open(tiny_index, embedder=fake_embedder)
    try:
        a.upsert([product(1, rng)])
        a.delete(["p01"])
        with pytest.raises(IndexNotFoundError, match="another process"):
            b.delete(["p02"])
        if other_compacts:
            a.compact()
    finally:
        a.close()
    try:
        b.delete(["p02"])
        assert_congruent(b)
        assert "n1" in b.store and "p01" not in b.store
        hits = b.search("item", k=20, mode="lexical")
        assert "n1" in [r.id for r in hits.results]
        assert "p01" not in [r.id for r in b.search("red", k=20, mode="text").results]
    finally:
        b.close()


def test_writes_go_on_during_compaction_and_survive_reopen(tiny_index, fake_embedder, monkeypatch):
    from prodsearch.index.vector import VectorIndex

    rng = np.random.default_rng(4)
    engine = Engine.open(tiny_index, embedder=fake_embedder)
    engine.upsert([product(1, rng)])  # something to compact
    original_sync = VectorIndex.sync
    finished = []
    compacting = threading.current_thread()

    def sync_then_write(self):
        original_sync(self)
        if finished or threading.current_thread() is not compacting:
            return

        def write():
            engine.upsert([product(2, rng)])
            engine.delete(["p03", "n1"])
            finished.append(True)

        t = threading.Thread(target=write)
        t.start()
        t.join(timeout=20)
        assert finished, "a write waited for the running compaction"

    monkeypatch.setattr(VectorIndex, "sync", sync_then_write)
    seq = engine.compact()
    monkeypatch.undo()
    try:
        assert finished
        assert_congruent(engine)
        assert engine.store.oplog_size() == 2 and engine.store.first_logged_seq() == seq + 1
    finally:
        engine.close()
    engine = Engine.open(tiny_index, embedder=fake_embedder)
    try:
        assert_congruent(engine)
        assert "n2" in engine.store and "n1" not in engine.store and "p03" not in engine.store
        assert [r.id for r in engine.search("item", k=5, mode="lexical").results] == ["n2"]
    finally:
        engine.close()


def test_background_compaction_starts_once_enough_writes_are_pending(tiny_index, fake_embedder, monkeypatch):
    from prodsearch.search import writer as writer_mod

    monkeypatch.setattr(writer_mod, "AUTO_COMPACT_MIN", 3)
    rng = np.random.default_rng(5)
    engine = Engine.open(tiny_index, embedder=fake_embedder)
    try:
        engine.upsert([product(1, rng)])
        engine.upsert([product(2, rng)])
        assert engine._writer._compactor is None  # 2 pending < 3
        engine.upsert([product(3, rng)])
        assert engine._writer._compactor is not None
    finally:
        engine.close()  # waits for the compaction
    engine = Engine.open(tiny_index, embedder=fake_embedder)
    try:
        assert engine.store.oplog_size() == 0  # checkpointed by the background compaction
        assert {"n1", "n2", "n3"} <= {p.id for p in engine.store.iter_products()}
        assert_congruent(engine)
    finally:
        engine.close()


def test_a_reading_process_sees_another_process_writes_without_reopening(tiny_index, fake_embedder):
    """Two engines on one folder stand for two processes (each has its own SQLite connection): the
    one that never writes applies the other's writes before each read, through replay while the
    log holds them and by reloading once a compaction dropped them."""
    rng = np.random.default_rng(5)
    writer = Engine.open(tiny_index, embedder=fake_embedder)
    reader = Engine.open(tiny_index, embedder=fake_embedder)
    try:
        assert reader.search("red", k=20, mode="text").results  # loaded, current
        writer.upsert([product(1, rng)])
        writer.delete(["p01"])
        ids = [r.id for r in reader.search("item", k=20, mode="lexical").results]
        assert "n1" in ids
        assert "p01" not in [r.id for r in reader.search("red", k=20, mode="text").results]
        assert reader.get("n1").title == writer.get("n1").title
        assert_congruent(reader)

        writer.compact()  # the log entries reader applied are dropped: nothing to do for it
        writer.upsert([product(2, rng)])  # the next entry is still in the log: replayed
        assert "n2" in [r.id for r in reader.search("item", k=20, mode="lexical").results]
        writer.upsert([product(3, rng)])
        writer.delete(["p02"])
        writer.compact()  # reader is now behind a compacted log: it reloads from disk
        got = [r.id for r in reader.search("item", k=20, mode="lexical").results]
        assert "n3" in got and "p02" not in [r.id for r in reader.search("blue", k=20, mode="text").results]
        assert_congruent(reader)
        assert not reader._writer.behind()
    finally:
        writer.close()
        reader.close()


def test_reads_in_one_process_never_fail_while_another_deletes(tiny_index, fake_embedder):
    rng = np.random.default_rng(6)
    writer = Engine.open(tiny_index, embedder=fake_embedder)
    reader = Engine.open(tiny_index, embedder=fake_embedder)
    writer.upsert([product(i, rng) for i in range(40)])
    errors: list[BaseException] = []
    done = threading.Event()

    def read_loop() -> None:
        while not done.is_set():
            try:
                for mode in ("text", "lexical", "hybrid"):
                    reader.search("item shirt", k=20, mode=mode)
            except BaseException as err:  # noqa: BLE001 - the test reports every failure
                errors.append(err)
                return

    threads = [threading.Thread(target=read_loop) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for i in range(40):
            writer.delete([f"n{i}"])
            if i % 10 == 9:
                writer.compact()
    finally:
        done.set()
        for t in threads:
            t.join()
    try:
        assert errors == []
        assert not {r.id for r in reader.search("item shirt", k=50, mode="lexical").results} & {
            f"n{i}" for i in range(40)
        }
        assert_congruent(reader)
    finally:
        writer.close()
        reader.close()
