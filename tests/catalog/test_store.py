"""ProductStore: upsert/update/unchanged/delete/sync, iid stability, rollback, reads, metadata."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from prodsearch.catalog import Product, ProductStore
from prodsearch.errors import CatalogError, ProductNotFoundError


def P(pid: str, title: str = "", colour: str = "red", image_hash: str | None = None, **kw) -> Product:
    return Product(id=pid, title=title or f"Product {pid}", text={"desc": f"about {pid}"},
                   attributes={"colour": colour, **kw}, image_path=f"/img/{pid}.jpg", image_hash=image_hash)  # fmt: skip


@pytest.fixture
def store(tmp_path: Path):
    with ProductStore(tmp_path / "products.sqlite") as s:
        yield s


def _snapshot(store: ProductStore) -> list[tuple]:
    return [(p.id, p.title, p.text, p.attributes, p.image_path, p.image_hash) for p in store.iter_products()]


def test_upsert_adds_updates_and_skips_unchanged(store: ProductStore):
    r = store.upsert([P("a"), P("b"), P("c")])
    assert (r.added, r.updated, r.unchanged) == ([1, 2, 3], [], [])
    r = store.upsert([P("c"), P("b", colour="blue"), P("d"), P("a", image_hash="h2")])
    assert (r.added, r.updated, r.unchanged) == ([4], [2, 1], [3])
    assert store.get("b").attributes == {"colour": "blue"} and store.get("a").image_hash == "h2"
    assert len(store) == 4 and "a" in store and "zz" not in store and 1 not in store


def test_unchanged_product_at_a_new_image_path_keeps_its_iid_and_gets_the_new_path(store: ProductStore):
    store.upsert([P("a", image_hash="h")])
    moved = P("a", image_hash="h")
    moved.image_path = "/elsewhere/a.jpg"
    r = store.upsert([moved])
    assert r.unchanged == [1] and store.get("a").image_path == "/elsewhere/a.jpg"


def test_iids_are_never_reused_after_delete(store: ProductStore):
    store.upsert([P("a"), P("b"), P("c")])
    assert store.delete(["c", "a"]) == [3, 1]  # c has the highest iid: a naive max+1 would reuse 3
    assert store.upsert([P("d"), P("a")]).added == [4, 5]
    assert store.all_iids().tolist() == [2, 4, 5] and store.all_iids().dtype == np.int64
    assert store.iid_of(["a", "b", "d"]) == [5, 2, 4]


def test_iids_survive_reopening(tmp_path: Path):
    with ProductStore(tmp_path / "products.sqlite") as s:
        s.upsert([P("a"), P("b")])
        s.delete(["b"])
    with ProductStore(tmp_path) as s:  # a folder means <folder>/products.sqlite
        assert s.iid_of(["a"]) == [1]
        assert s.upsert([P("c")]).added == [3]
        assert s.path.name == "products.sqlite"


def test_delete_unknown_ids_deletes_nothing(store: ProductStore):
    store.upsert([P("a"), P("b")])
    with pytest.raises(ProductNotFoundError, match=r"unknown product id\(s\) \['x', 'y'\]"):
        store.delete(["a", "x", "y"])
    assert len(store) == 2


def test_failed_upsert_rolls_back_everything(store: ProductStore):
    store.upsert([P("a"), P("b")])
    before = _snapshot(store)
    bad = P("y")
    bad.attributes = {"colour": 3}  # not a string: rejected when the loop reaches it, after writes
    with pytest.raises(CatalogError, match=r"product 'y': attributes must map str to str"):
        store.upsert([P("x"), P("a", colour="green"), bad])
    assert _snapshot(store) == before and "x" not in store
    assert store.upsert([P("z")]).added == [3]  # the rolled-back insert consumed no iid


def test_failure_inside_sqlite_rolls_back_sync(store: ProductStore, monkeypatch):
    store.upsert([P("a"), P("b")])
    before = _snapshot(store)

    def boom(*_a, **_k):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(ProductStore, "_delete_iids", staticmethod(boom))
    with pytest.raises(sqlite3.OperationalError):
        store.sync([P("a", colour="green"), P("c")], delete_missing=True)  # upserts succeed, delete fails
    assert _snapshot(store) == before


def test_duplicate_ids_in_one_upsert_are_refused(store: ProductStore):
    with pytest.raises(CatalogError, match=r"'a' appears twice"):
        store.upsert([P("a"), P("a", colour="blue")])
    assert len(store) == 0


def test_sync_deletes_missing_only_when_asked(store: ProductStore):
    store.upsert([P("a"), P("b"), P("c")])
    r = store.sync([P("a"), P("c", colour="blue"), P("d")], delete_missing=False)
    assert (r.added, r.updated, r.unchanged, r.deleted) == ([4], [3], [1], [])
    assert len(store) == 4
    r = store.sync([P("a"), P("c", colour="blue"), P("d")], delete_missing=True)
    assert (r.added, r.updated, r.unchanged, r.deleted) == ([], [], [1, 3, 4], [2])
    assert "b" not in store


def test_reads_preserve_order_and_name_unknown_keys(store: ProductStore):
    store.upsert([P(c) for c in "abcde"])
    assert [p.id for p in store.by_iids([5, 1, 3, 1])] == ["e", "a", "c", "a"]
    assert [p.id for p in store.get_many(["d", "b"])] == ["d", "b"]
    assert store.by_iids([]) == []
    with pytest.raises(ProductNotFoundError, match=r"iid\(s\) \[9\]"):
        store.by_iids([1, 9])
    with pytest.raises(ProductNotFoundError, match=r"\['q'\]"):
        store.get("q")
    with pytest.raises(ProductNotFoundError, match=r"\['q'\]"):
        store.iid_of(["a", "q"])
    got = store.get("c")
    assert got == Product("c", "Product c", {"desc": "about c"}, {"colour": "red"}, "/img/c.jpg", None)


def test_by_iids_cache_is_safe_and_fresh(store: ProductStore, tmp_path: Path):
    store.upsert([P("a"), P("b")])
    first = store.by_iids([1])[0]
    first.attributes["colour"] = "mutated"  # callers get copies
    assert store.by_iids([1])[0].attributes == {"colour": "red"}
    store.upsert([P("a", colour="blue")])  # own write
    assert store.by_iids([1])[0].attributes == {"colour": "blue"}
    with ProductStore(tmp_path / "products.sqlite") as other:  # another connection's write
        other.upsert([P("a", colour="green")])
    assert store.by_iids([1])[0].attributes == {"colour": "green"}


def test_iter_products_pages_through_everything_in_iid_order(store: ProductStore):
    store.upsert([P(f"p{i:02d}") for i in range(25)])
    store.delete(["p03", "p10"])
    got = [p.id for p in store.iter_products(batch=4)]
    assert got == [f"p{i:02d}" for i in range(25) if i not in (3, 10)]


def test_attribute_table_aligns_with_iids(store: ProductStore):
    store.upsert([P("a", colour="red", size="M"), P("b", colour="blue"), P("c", colour="red", size="L")])
    store.delete(["b"])
    iids, table = store.attribute_table()
    assert iids.tolist() == [1, 3]
    assert sorted(table) == ["colour", "size"] == store.attribute_fields()
    assert table["colour"].tolist() == ["red", "red"] and table["size"].tolist() == ["M", "L"]
    store.upsert([P("d", colour="green")])  # cache dropped on write; missing field -> ""
    iids, table = store.attribute_table()
    assert iids.tolist() == [1, 3, 4] and table["size"].tolist() == ["M", "L", ""]


def test_meta_roundtrip(store: ProductStore):
    assert store.meta_get("encoder") is None and store.meta_get("encoder", {}) == {}
    store.meta_set("encoder", {"name": "minilm", "dim": 384})
    store.meta_set("encoder", {"name": "minilm", "dim": 512})
    assert store.meta_get("encoder") == {"dim": 512, "name": "minilm"}


def test_store_uses_wal_and_needs_an_existing_folder(tmp_path: Path, store: ProductStore):
    mode = sqlite3.connect(tmp_path / "products.sqlite").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    with pytest.raises(CatalogError, match="does not exist"):
        ProductStore(tmp_path / "nope" / "products.sqlite")


def test_concurrent_reads_and_writes_from_threads(store: ProductStore):
    store.upsert([P(f"p{i}") for i in range(50)])
    errors: list[BaseException] = []

    def reader():
        try:
            for _ in range(100):
                assert [p.id for p in store.by_iids([1, 50])] == ["p0", "p49"]
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for i in range(20):
        store.upsert([P(f"q{i}")])
    for t in threads:
        t.join()
    assert not errors and len(store) == 70
