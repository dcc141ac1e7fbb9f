"""Product attributes for vectorised filters and facets, updated in O(batch).

Like the vector and lexical indexes, the table has a *main* part, immutable between compactions
(so the derived filter data that :mod:`prodsearch.index.filters` caches per column array is
computed once), tombstones for its rows deleted or replaced since, and a small *delta* part with
the rows written since. A write touches the tombstones and rebuilds the delta's arrays: O(batch +
delta), plus one int64 concatenation for :attr:`AttributeTable.iids`. :meth:`AttributeTable.merged`
folds the delta into a new main part, carrying the derived filter data over.

Rows are addressed in one combined order, main rows then delta rows; masks (:meth:`mask`,
:meth:`live`) and :attr:`iids` use it, so ``table.iids[table.mask(flt)]`` are the products passing
``flt``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from prodsearch.index.filters import Filter, carry_over, evaluate, facet_counts


def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def _column(values: list[str]) -> np.ndarray:
    col = np.empty(len(values), dtype=object)
    col[:] = values
    return _frozen(col)


class AttributeTable:
    """``iids`` (N,) int64 and string attribute columns; see the module docstring."""

    def __init__(self, iids: np.ndarray, table: Mapping[str, np.ndarray]):
        self._main_iids = _frozen(np.asarray(iids, dtype=np.int64))
        n = self._main_iids.size
        if np.any(np.diff(self._main_iids) <= 0):
            raise ValueError("AttributeTable: iids must be strictly ascending")
        self._main = {f: _frozen(np.asarray(c, dtype=object)) for f, c in table.items()}
        for f, c in self._main.items():
            if c.shape != (n,):
                raise ValueError(f"AttributeTable: column {f!r} has shape {c.shape}, expected ({n},)")
        self._dead = np.zeros(n, bool)
        self._delta: dict[int, dict[str, str]] = {}
        self._refresh()

    # ------------------------------------------------------------------ shape
    def _refresh(self) -> None:
        self.fields = sorted(set(self._main) | {f for a in self._delta.values() for f in a})
        for f in self.fields:  # a field only delta rows have: an all-missing main column, once
            if f not in self._main:
                self._main[f] = _column([""] * self._main_iids.size)
        d_iids = np.fromiter(self._delta, dtype=np.int64, count=len(self._delta))
        self._delta_iids = d_iids
        self._delta_cols = {f: _column([a.get(f, "") for a in self._delta.values()]) for f in self.fields}
        self.iids = _frozen(np.concatenate([self._main_iids, d_iids]))

    def __len__(self) -> int:
        return int(self.iids.size)

    @property
    def delta_size(self) -> int:
        return len(self._delta) + int(self._dead.sum())

    def live(self) -> np.ndarray:
        """(N,) bool: the rows that are current (not tombstoned)."""
        return np.concatenate([~self._dead, np.ones(len(self._delta), bool)])

    # ------------------------------------------------------------------ writes
    def apply(self, deleted: Sequence[int], put: Mapping[int, Mapping[str, str]]) -> None:
        """Remove the rows of ``deleted`` iids and set those of ``put`` (iid -> attributes)."""
        for iid in [*deleted, *put]:
            self._delta.pop(int(iid), None)
        gone = np.asarray([*deleted, *put], dtype=np.int64)
        if gone.size and self._main_iids.size:
            pos = np.minimum(np.searchsorted(self._main_iids, gone), self._main_iids.size - 1)
            hit = self._main_iids[pos] == gone
            self._dead[pos[hit]] = True
        self._delta.update({int(i): dict(a) for i, a in put.items()})
        self._refresh()

    def merged(self) -> AttributeTable:
        """A table with the delta folded into the main part (deleted rows dropped, replaced rows
        updated in place, new rows appended); the derived filter data of the main columns is
        carried over (:func:`prodsearch.index.filters.carry_over`) instead of recomputed."""
        in_delta = np.isin(self._main_iids, self._delta_iids)
        keep = np.nonzero(~self._dead | in_delta)[0]
        kept = self._main_iids[keep]
        replace_at = np.nonzero(in_delta[keep])[0]
        new = np.setdiff1d(self._delta_iids, kept)  # ascending
        iids = np.concatenate([kept, new])
        ordered = not (kept.size and new.size) or new[0] > kept[-1]  # new iids are the largest
        cols = {}
        for f in self.fields:
            col = np.empty(iids.size, dtype=object)
            col[: keep.size] = self._main[f][keep]
            col[replace_at] = [self._delta[i].get(f, "") for i in kept[replace_at].tolist()]
            col[keep.size :] = [self._delta[i].get(f, "") for i in new.tolist()]
            if ordered:
                carry_over(self._main[f], col, keep, replace_at, int(new.size))
            cols[f] = col
        if not ordered:  # pragma: no cover - the store hands out ascending iids
            order = np.argsort(iids, kind="stable")
            iids, cols = iids[order], {f: c[order] for f, c in cols.items()}
        return AttributeTable(iids, cols)

    # ------------------------------------------------------------------ reads
    def mask(self, flt: Filter) -> np.ndarray:
        """(N,) bool: the current rows passing ``flt``."""
        main = evaluate(flt, self._main) & ~self._dead
        if not self._delta:
            return main
        return np.concatenate([main, evaluate(flt, self._delta_cols)])

    def facet_counts(
        self, fields: Sequence[str], mask: np.ndarray | None = None, top: int | None = None
    ) -> dict[str, list[tuple[str, int]]]:
        """Value counts per field over the current rows selected by ``mask`` (all if None)."""
        mask = self.live() if mask is None else (np.asarray(mask, dtype=bool) & self.live())
        n = self._main_iids.size
        parts = [facet_counts(self._main, fields, mask=mask[:n])]
        if self._delta:
            parts.append(facet_counts(self._delta_cols, fields, mask=mask[n:]))
        out: dict[str, list[tuple[str, int]]] = {}
        for f in fields:
            counts: dict[str, int] = {}
            for part in parts:
                for value, c in part[f]:
                    counts[value] = counts.get(value, 0) + c
            pairs = sorted(counts.items(), key=lambda vc: (-vc[1], vc[0]))
            out[f] = pairs if top is None else pairs[:top]
        return out

    def columns(self) -> dict[str, np.ndarray]:
        """Every column over the current rows only, in :meth:`current_iids` order (O(N) copies)."""
        live = self.live()
        return {f: _frozen(np.concatenate([self._main[f], self._delta_cols[f]])[live]) for f in self.fields}

    def current_iids(self) -> np.ndarray:
        return _frozen(self.iids[self.live()])

    def __repr__(self) -> str:
        return f"AttributeTable(main={self._main_iids.size}, dead={int(self._dead.sum())}, delta={len(self._delta)})"

    def to_dict(self) -> dict[str, Any]:  # for debugging and tests
        return {"iids": self.current_iids().tolist(), **{f: c.tolist() for f, c in self.columns().items()}}
