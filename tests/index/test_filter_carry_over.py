"""Filter column data carried over a patch of the attribute table equals recomputing it, so the
first filtered search after a write costs O(changed rows); and a store's patched attribute table
filters exactly like one read fresh from disk."""

from __future__ import annotations

import numpy as np
import pytest

from prodsearch.catalog.schema import Product
from prodsearch.catalog.store import ProductStore
from prodsearch.index import filters as F


def uncached(flt: F.Filter, field: str, col: np.ndarray) -> np.ndarray:
    """``evaluate`` on a copy of the column: a new array object, so its data is computed afresh."""
    return F.evaluate(flt, {field: col.copy()})


VALUES = ["Red", "navy  Blue", "", "2012", "2012.0", "7.5", "Grün", "x" * 300, "T-Shirt", "nan"]


def column(rng: np.random.Generator, n: int) -> np.ndarray:
    col = np.empty(n, dtype=object)
    col[:] = [VALUES[i] for i in rng.integers(len(VALUES), size=n)]
    return col


@pytest.mark.parametrize("seed", range(6))
def test_carry_over_equals_recomputing(seed):
    rng = np.random.default_rng(seed)
    old = column(rng, int(rng.integers(0, 40)))
    F._column({"f": old}, "f")  # derived data cached, as after a filtered search
    keep = np.sort(rng.choice(old.size, size=int(rng.integers(0, old.size + 1)), replace=False)).astype(
        np.int64
    )
    replace_at = np.sort(
        rng.choice(keep.size, size=int(rng.integers(0, keep.size + 1)), replace=False)
    ).astype(np.int64)
    appended = int(rng.integers(0, 5))
    new = np.empty(keep.size + appended, dtype=object)
    new[: keep.size] = old[keep]
    fresh_values = column(rng, replace_at.size + appended)
    new[replace_at] = fresh_values[: replace_at.size]
    new[keep.size :] = fresh_values[replace_at.size :]
    F.carry_over(old, new, keep, replace_at, appended)
    carried = F._cached(new)
    assert carried is not None
    reference = F._Column(new)
    for name, arr in vars(reference).items():
        if isinstance(arr, np.ndarray):
            np.testing.assert_array_equal(getattr(carried, name), arr, err_msg=name)
    for flt in (
        {"f": "Red"},
        {"f": ["navy blue", "Grün"]},
        {"field": "f", "range": {"gte": 2000}},
        {"field": "f", "match": "shirt"},
    ):
        parsed = F.parse_filter(flt)
        np.testing.assert_array_equal(
            F.evaluate(parsed, {"f": new}), uncached(parsed, "f", new), err_msg=str(flt)
        )


def test_patched_store_table_filters_like_a_fresh_read(tmp_path):
    rng = np.random.default_rng(0)
    store = ProductStore(tmp_path)

    def product(i: int) -> Product:
        return Product(
            id=f"p{i}",
            title=f"t{i}",
            attributes={"colour": VALUES[int(rng.integers(len(VALUES)))], "size": str(int(rng.integers(5)))},
        )

    store.commit([product(i) for i in range(30)], vectors={f"p{i}": {} for i in range(30)})
    for _ in range(8):
        _, table = store.attribute_table()
        F._column(table, "colour")  # cached before each write, as in a serving engine
        ups = [product(int(i)) for i in rng.integers(0, 45, size=4)]
        ups = list({p.id: p for p in ups}.values())
        gone = [f"p{i}" for i in rng.integers(0, 45, size=3)]
        gone = [g for g in dict.fromkeys(gone) if g in store and g not in {p.id for p in ups}]
        store.commit(ups, delete=gone, vectors={p.id: {} for p in ups})
        iids, table = store.attribute_table()
        with ProductStore(tmp_path) as fresh:
            f_iids, f_table = fresh.attribute_table()
        np.testing.assert_array_equal(iids, f_iids)
        assert {k: v.tolist() for k, v in table.items()} == {k: v.tolist() for k, v in f_table.items()}
        flt = F.parse_filter({"colour": ["Red", "2012"]})
        np.testing.assert_array_equal(F.evaluate(flt, table), uncached(flt, "colour", f_table["colour"]))
    store.close()
