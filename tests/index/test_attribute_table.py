"""AttributeTable (main part + tombstones + delta) against a table built afresh from the same
rows, over random write sequences and merges: masks, facets and the carried-over filter data."""

from __future__ import annotations

import numpy as np
import pytest

from prodsearch.index import filters as F
from prodsearch.index.attributes import AttributeTable

VALUES = ["Red", "navy blue", "", "2012", "7.5", "Grün", "T-Shirt", "x" * 300]
FIELDS = ["colour", "size", "year"]
FILTERS = [
    {"colour": "red"},
    {"colour": ["navy blue", "Grün"]},
    {"field": "year", "range": {"gte": 2000}},
    {"not": {"field": "size", "eq": "7.5"}},
    {"field": "colour", "match": "shirt"},
    {"new": "Red"},
]


def attrs(rng: np.random.Generator, fields=FIELDS) -> dict[str, str]:
    return {f: VALUES[int(rng.integers(len(VALUES)))] for f in fields if rng.random() < 0.85}


def fresh(rows: dict[int, dict[str, str]]) -> AttributeTable:
    iids = np.asarray(sorted(rows), dtype=np.int64)
    fields = sorted({f for a in rows.values() for f in a})
    cols = {f: np.asarray([rows[i].get(f, "") for i in iids.tolist()] + [], dtype=object) for f in fields}
    return AttributeTable(iids, cols)


def passing(table: AttributeTable, flt) -> set[int]:
    return set(table.iids[table.mask(F.parse_filter(flt))].tolist())


@pytest.mark.parametrize("seed", range(4))
def test_random_writes_and_merges_match_a_fresh_table(seed):
    rng = np.random.default_rng(seed)
    rows = {i: attrs(rng) for i in range(0, 200, 2)}
    table = fresh(rows)
    for f in table.fields:
        F._column(table._main, f)  # derived data cached, as when serving
    next_iid = 300
    for step in range(30):
        put = {}
        for i in rng.choice(sorted(rows), size=min(3, len(rows)), replace=False).tolist():
            put[int(i)] = attrs(rng)  # updates
        for _ in range(int(rng.integers(0, 3))):
            put[next_iid] = attrs(rng, FIELDS + (["new"] if step > 10 else []))
            next_iid += 1
        deleted = [int(i) for i in rng.choice(sorted(set(rows) - set(put)), size=2, replace=False)]
        table.apply(deleted, put)
        for i in deleted:
            rows.pop(i)
        rows.update(put)
        if step % 7 == 6:
            table = table.merged()
            assert table.delta_size == 0
        ref = fresh(rows)
        assert set(table.iids[table.live()].tolist()) == set(rows)
        for flt in FILTERS:
            if F.fields_of(F.parse_filter(flt)) <= set(ref.fields):
                assert passing(table, flt) == passing(ref, flt), flt
        fields = list(ref.fields)  # (a field whose last product went stays listed until a merge)
        assert table.facet_counts(fields, top=None) == ref.facet_counts(fields, top=None)
        sel = table.iids % 3 == 0
        ref_sel = ref.iids % 3 == 0
        assert table.facet_counts(fields, mask=sel) == ref.facet_counts(fields, mask=ref_sel)


def test_merge_carries_derived_filter_data_over():
    rng = np.random.default_rng(9)
    rows = {i: attrs(rng) for i in range(50)}
    table = fresh(rows)
    for f in table.fields:
        F._column(table._main, f)
    table.apply([3, 4], {5: {"colour": "Grün"}, 60: {"colour": "Red", "year": "2015"}})
    merged = table.merged()
    for f in merged.fields:
        carried = F._cached(merged._main[f])
        assert carried is not None, f  # no recomputation on the next filtered search
        reference = F._Column(merged._main[f].copy())
        for name, arr in vars(reference).items():
            if isinstance(arr, np.ndarray):
                np.testing.assert_array_equal(getattr(carried, name), arr, err_msg=f"{f}.{name}")
