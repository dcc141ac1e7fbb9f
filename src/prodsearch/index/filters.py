"""Attribute filters as one typed structure (like qdrant's), evaluated vectorised over an attribute
table or on one product, plus facet counts. numpy only.

JSON form accepted by :func:`parse_filter`::

    {"field": "gender", "eq": "Men"}
    {"field": "baseColour", "in": ["Red", "Blue"]}
    {"field": "year", "range": {"gte": 2012, "lt": 2016}}
    {"field": "colour", "match": "grey"}                 # token match: "Light Grey" passes
    {"and": [...]}, {"or": [...]}, {"not": {...}}
    {"gender": "Men", "baseColour": ["Red", "Blue"]}      # shorthand: AND of eq / in
    [ {...}, {...} ]                                     # a list: AND of its items

Semantics (the same in :func:`evaluate` and :func:`matches`):

* attribute values are strings; ``None``, NaN and ``""`` mean *missing*, and a missing value
  matches no condition (so ``not`` of a condition matches it);
* ``eq``/``in`` with a string compare keywords: case, accents and runs of whitespace are ignored
  (:func:`normalize_keyword`: "grey" equals " Grey", "creme" equals "Crème"); with a number they
  compare numerically against values that parse as numbers ("2012" and "2012.0" both equal 2012);
* ``match`` is for free-text attributes: every word of the query appears among the words of the
  value, keyword-normalised ("grey" matches "Light Grey", "navy blue" matches "Blue Navy");
* ``range`` bounds compare numerically when both the value and the bound parse as numbers,
  otherwise as strings (lexicographic);
* ``{"and": []}`` matches everything, ``{"or": []}`` and ``{"in": []}`` match nothing.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from prodsearch.errors import QueryError

RANGE_OPS = ("gt", "gte", "lt", "lte")
FIELD_OPS = ("eq", "in", "range", "match")
LOGICAL = ("and", "or", "not")
#: Longest attribute value stored as fixed-width unicode for vectorised compares (else object dtype).
_MAX_FIXED_WIDTH = 256
Scalar = str | int | float
_MAX_INT = 2**63 - 1
_WORD = re.compile(r"\w+")


def normalize_keyword(value: str) -> str:
    """The form ``eq``/``in`` compare: accents dropped, case folded, whitespace collapsed.

    ``"  Crème   Brûlée "`` -> ``"creme brulee"``; shoppers and facet clicks type values loosely.
    """
    decomposed = unicodedata.normalize("NFKD", value)
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(plain.casefold().split())


def keyword_tokens(value: str) -> frozenset[str]:
    """Words of a keyword-normalised value, for ``match``: ``"Light-Grey"`` -> ``{"light", "grey"}``."""
    return frozenset(_WORD.findall(normalize_keyword(value)))


# ---------------------------------------------------------------------------- structure
@dataclass(frozen=True)
class FieldCondition:
    """One condition on one field: exactly one of ``eq``, ``any_of`` (JSON ``in``), ``range`` or
    ``match`` (token match on free text)."""

    field: str
    eq: Scalar | None = None
    any_of: tuple[Scalar, ...] | None = None
    range: tuple[tuple[str, Scalar], ...] | None = None  # (("gte", 2012), ("lt", 2016))
    match: str | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.eq is not None:
            return {"field": self.field, "eq": self.eq}
        if self.any_of is not None:
            return {"field": self.field, "in": list(self.any_of)}
        if self.match is not None:
            return {"field": self.field, "match": self.match}
        return {"field": self.field, "range": dict(self.range or ())}


@dataclass(frozen=True)
class And:
    filters: tuple[Filter, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"and": [f.to_dict() for f in self.filters]}


@dataclass(frozen=True)
class Or:
    filters: tuple[Filter, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"or": [f.to_dict() for f in self.filters]}


@dataclass(frozen=True)
class Not:
    filter: Filter

    def to_dict(self) -> dict[str, Any]:
        return {"not": self.filter.to_dict()}


Filter = FieldCondition | And | Or | Not


# ---------------------------------------------------------------------------- parsing
def _scalar(value: Any, key: str) -> Scalar:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise QueryError(
            f"filter key {key!r} expects a string or a number, got {type(value).__name__} {value!r}"
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise QueryError(f"filter key {key!r} expects a finite number, got {value!r}")
    if isinstance(value, int) and abs(value) > _MAX_INT:  # float(10**400) would overflow
        raise QueryError(
            f"filter key {key!r} expects a number within +-{_MAX_INT}, got one with {len(str(abs(value)))} digits"
        )
    return value


def _field(name: Any, valid_fields: Sequence[str] | None) -> str:
    if not isinstance(name, str) or not name:
        raise QueryError(f"filter key 'field' expects a non-empty string, got {name!r}")
    if valid_fields is not None and name not in valid_fields:
        raise QueryError(f"unknown filter field {name!r}; valid fields: {sorted(valid_fields)}")
    return name


def _condition(field: str, value: Any) -> FieldCondition:
    """Shorthand ``{field: value}``: a list means ``in``, a scalar means ``eq``."""
    if isinstance(value, (list, tuple)):
        return FieldCondition(field, any_of=tuple(_scalar(v, field) for v in value))
    if isinstance(value, Mapping):  # {"colour": {"match": "grey"}} == {"field": "colour", "match": "grey"}
        if len(value) == 1 and next(iter(value)) in FIELD_OPS:
            return _parse_field_condition({"field": field, **value}, None)
        raise QueryError(
            f"filter shorthand {field!r} expects a string, a number, a list or one of "
            f"{{'eq'|'in'|'range'|'match': ...}}, got {dict(value)!r}"
        )
    return FieldCondition(field, eq=_scalar(value, field))


def _parse_field_condition(obj: Mapping[str, Any], valid_fields: Sequence[str] | None) -> FieldCondition:
    field = _field(obj["field"], valid_fields)
    ops = [k for k in obj if k != "field"]
    unknown = [k for k in ops if k not in FIELD_OPS]
    if unknown:
        raise QueryError(
            f"unknown filter key(s) {unknown} for field {field!r}; expected one of {list(FIELD_OPS)}"
        )
    if len(ops) != 1:
        raise QueryError(
            f"a field condition needs exactly one of {list(FIELD_OPS)} (field {field!r}, got {ops})"
        )
    op = ops[0]
    value = obj[op]
    if op == "match":
        if not isinstance(value, str) or not keyword_tokens(value):
            raise QueryError(f"filter key 'match' expects a string with at least one word, got {value!r}")
        return FieldCondition(field, match=value)
    if op == "eq":
        return FieldCondition(field, eq=_scalar(value, "eq"))
    if op == "in":
        if not isinstance(value, (list, tuple)):
            raise QueryError(f"filter key 'in' expects a list, got {type(value).__name__} {value!r}")
        return FieldCondition(field, any_of=tuple(_scalar(v, "in") for v in value))
    if not isinstance(value, Mapping) or not value:
        raise QueryError(
            f"filter key 'range' expects an object with some of {list(RANGE_OPS)}, got {value!r}"
        )
    bad = [k for k in value if k not in RANGE_OPS]
    if bad:
        raise QueryError(
            f"unknown range key(s) {bad} for field {field!r}; expected some of {list(RANGE_OPS)}"
        )
    return FieldCondition(field, range=tuple((k, _scalar(value[k], k)) for k in RANGE_OPS if k in value))


def parse_filter(obj: Any, valid_fields: Sequence[str] | None = None) -> Filter:
    """Parse the JSON form (or a JSON string, or an already-parsed filter) into a :data:`Filter`.

    ``valid_fields``: if given, any other field name raises :class:`QueryError` listing the valid ones.
    """
    if isinstance(obj, (FieldCondition, And, Or, Not)):
        return obj
    if isinstance(obj, str):
        try:
            obj = json.loads(obj)
        except json.JSONDecodeError as err:
            raise QueryError(f"filter is not valid JSON: {err}") from err
    if isinstance(obj, (list, tuple)):
        return And(tuple(parse_filter(o, valid_fields) for o in obj))
    if not isinstance(obj, Mapping):
        raise QueryError(f"a filter must be an object or a list of objects, got {type(obj).__name__} {obj!r}")
    if "field" in obj:
        return _parse_field_condition(obj, valid_fields)
    parts: list[Filter] = []
    for key, value in obj.items():
        if key in ("and", "or"):
            if not isinstance(value, (list, tuple)):
                raise QueryError(f"filter key {key!r} expects a list of filters, got {type(value).__name__}")
            subs = tuple(parse_filter(v, valid_fields) for v in value)
            parts.append(And(subs) if key == "and" else Or(subs))
        elif key == "not":
            parts.append(Not(parse_filter(value, valid_fields)))
        else:
            parts.append(_condition(_field(key, valid_fields), value))
    if len(parts) == 1:
        return parts[0]
    return And(tuple(parts))


def fields_of(flt: Filter) -> set[str]:
    """Every field name the filter mentions."""
    if isinstance(flt, FieldCondition):
        return {flt.field}
    if isinstance(flt, Not):
        return fields_of(flt.filter)
    return set().union(*(fields_of(f) for f in flt.filters)) if flt.filters else set()


# ---------------------------------------------------------------------------- scalar semantics
def _missing(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))


def _to_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        f = float(value)
    else:
        try:
            f = float(str(value).strip())
        except ValueError:
            return None
    return f if math.isfinite(f) else None


def _as_text(value: Any) -> str:
    # a float cell that is integral prints like the CSV it came from ("2012", not "2012.0")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _eq(cell: Any, target: Scalar) -> bool:
    if isinstance(target, str):
        return normalize_keyword(_as_text(cell)) == normalize_keyword(target)
    num = _to_number(cell)
    return num is not None and num == float(target)


_CMP = {
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
}


def _in_range(cell: Any, bounds: tuple[tuple[str, Scalar], ...]) -> bool:
    num = _to_number(cell)
    for op, bound in bounds:
        bnum = _to_number(bound)
        if num is not None and bnum is not None:
            ok = _CMP[op](num, bnum)
        else:
            ok = _CMP[op](_as_text(cell), _as_text(bound))
        if not ok:
            return False
    return True


def matches(flt: Filter, attrs: Mapping[str, Any]) -> bool:
    """Whether one product with attributes ``attrs`` passes ``flt`` (a missing key = missing value)."""
    if isinstance(flt, And):
        return all(matches(f, attrs) for f in flt.filters)
    if isinstance(flt, Or):
        return any(matches(f, attrs) for f in flt.filters)
    if isinstance(flt, Not):
        return not matches(flt.filter, attrs)
    cell = attrs.get(flt.field)
    if _missing(cell):
        return False
    if flt.eq is not None:
        return _eq(cell, flt.eq)
    if flt.any_of is not None:
        return any(_eq(cell, v) for v in flt.any_of)
    if flt.match is not None:
        return keyword_tokens(flt.match) <= keyword_tokens(_as_text(cell))
    return _in_range(cell, flt.range or ())


# ---------------------------------------------------------------------------- vectorised
class _Column:
    """A column's derived arrays (text, missing mask, numeric value), cached per array object."""

    def __init__(self, col: np.ndarray):
        values = col.tolist()
        self.missing = np.fromiter((_missing(v) for v in values), bool, len(values))
        texts = [_as_text(v) for v in values]
        # fixed-width unicode compares fastest, but costs 4 bytes x the longest value per row
        wide = max(map(len, texts), default=0) > _MAX_FIXED_WIDTH
        self.text = np.array(texts, dtype=object if wide else str) if texts else np.zeros(0, dtype=str)
        keys = [normalize_keyword(t) for t in texts]
        self.key = np.array(keys, dtype=object if wide else str) if keys else np.zeros(0, dtype=str)
        self._tokens: tuple[np.ndarray, list[frozenset[str]]] | None = None
        nums = [_to_number(v) for v in values]
        self.num = np.array([np.nan if v is None else v for v in nums], dtype=np.float64)
        self.is_num = ~np.isnan(self.num)

    def token_match(self, query: str) -> np.ndarray:
        """Rows whose words include every word of ``query`` (word sets computed once per distinct value)."""
        if self._tokens is None:
            uniq, inverse = np.unique(self.key, return_inverse=True)
            self._tokens = (inverse.reshape(-1), [keyword_tokens(str(u)) for u in uniq])
        inverse, sets = self._tokens
        want = keyword_tokens(query)
        per_value = np.fromiter((want <= s for s in sets), bool, len(sets))
        return per_value[inverse] if len(inverse) else np.zeros(0, bool)


_CACHE: dict[int, tuple[weakref.ref[np.ndarray], _Column]] = {}


def _cached(col: np.ndarray) -> _Column | None:
    hit = _CACHE.get(id(col))
    return hit[1] if hit is not None and hit[0]() is col else None


def _remember(col: np.ndarray, derived: _Column) -> None:
    try:
        ref = weakref.ref(col, lambda _r, key=id(col): _CACHE.pop(key, None))
    except TypeError:  # pragma: no cover - arrays always support weakrefs
        return
    _CACHE[id(col)] = (ref, derived)


def carry_over(
    old: np.ndarray, new: np.ndarray, keep: np.ndarray, replace_at: np.ndarray, appended: int
) -> None:
    """Derive the filter data of column ``new`` from that of ``old`` (if computed) in O(changed rows)
    plus array copies, instead of re-parsing every value on the next filtered search.

    ``new`` must be ``old[keep]`` with the rows at positions ``replace_at`` given new values and
    ``appended`` new values added at the end (how the product store patches its attribute table
    after a write)."""
    derived = _cached(old)
    if derived is None:
        return
    n_keep = int(keep.size)
    changed = np.concatenate([replace_at, np.arange(n_keep, n_keep + appended)]).astype(np.int64)
    fresh = _Column(np.asarray(new[changed], dtype=object))
    order = np.arange(n_keep + appended)
    order[replace_at] = n_keep + np.arange(replace_at.size)
    order[n_keep:] = n_keep + replace_at.size + np.arange(appended)
    out = _Column.__new__(_Column)
    for name, arr in vars(derived).items():
        if isinstance(arr, np.ndarray) and arr.shape[:1] == (len(old),):
            # concatenating promotes the dtype, so a longer new value is never truncated
            setattr(out, name, np.concatenate([arr[keep], getattr(fresh, name)])[order])
        else:
            setattr(out, name, None)  # lazily computed extras (e.g. token sets) start over
    _remember(new, out)


def _column(table: Mapping[str, np.ndarray], field: str) -> _Column:
    if field not in table:
        raise QueryError(f"unknown filter field {field!r}; valid fields: {sorted(table)}")
    col = table[field]
    if not isinstance(col, np.ndarray):
        return _Column(np.asarray(col, dtype=object))
    derived = _cached(col)
    if derived is None:
        derived = _Column(col)
        _remember(col, derived)
    return derived


def _eq_mask(c: _Column, target: Scalar) -> np.ndarray:
    if isinstance(target, str):
        return c.key == normalize_keyword(target)
    return c.is_num & (c.num == float(target))


def evaluate(flt: Filter, table: Mapping[str, np.ndarray]) -> np.ndarray:
    """Boolean mask (N,) of the rows of ``table`` (columns of N attribute values each) passing ``flt``.

    Derived column data (text/number parsing) is cached per column array, so repeated filters over
    the same table cost a few vectorised comparisons.
    """
    n = _table_len(table)
    return _evaluate(flt, table, n)


def _table_len(table: Mapping[str, np.ndarray]) -> int:
    lengths = {len(v) for v in table.values()}
    if len(lengths) > 1:
        raise ValueError(
            f"attribute table columns differ in length: { {k: len(v) for k, v in table.items()} }"
        )
    return lengths.pop() if lengths else 0


def _evaluate(flt: Filter, table: Mapping[str, np.ndarray], n: int) -> np.ndarray:
    if isinstance(flt, And):
        out = np.ones(n, bool)
        for f in flt.filters:
            out &= _evaluate(f, table, n)
        return out
    if isinstance(flt, Or):
        out = np.zeros(n, bool)
        for f in flt.filters:
            out |= _evaluate(f, table, n)
        return out
    if isinstance(flt, Not):
        return ~_evaluate(flt.filter, table, n)
    c = _column(table, flt.field)
    if flt.eq is not None:
        hit = _eq_mask(c, flt.eq)
    elif flt.any_of is not None:
        hit = np.zeros(n, bool)
        strs = [normalize_keyword(v) for v in flt.any_of if isinstance(v, str)]
        if strs:
            hit |= np.isin(c.key, np.array(strs, dtype=str))
        for v in flt.any_of:
            if not isinstance(v, str):
                hit |= _eq_mask(c, v)
    elif flt.match is not None:
        hit = c.token_match(flt.match)
    else:
        hit = np.ones(n, bool)
        for op, bound in flt.range or ():
            bnum = _to_number(bound)
            by_text = _CMP[op](c.text, _as_text(bound))
            if bnum is None:
                hit &= by_text
            else:
                with np.errstate(invalid="ignore"):
                    by_num = _CMP[op](c.num, bnum)
                hit &= np.where(c.is_num, by_num, by_text)
    return hit & ~c.missing


# ---------------------------------------------------------------------------- facets
def facet_counts(
    table: Mapping[str, np.ndarray],
    fields: Sequence[str],
    mask: np.ndarray | None = None,
    top: int | None = None,
) -> dict[str, list[tuple[str, int]]]:
    """Value counts per field over the rows selected by ``mask`` (all rows if None), missing values
    left out, sorted by count descending then value; ``top`` keeps the first ``top`` per field."""
    n = _table_len(table)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (n,):
            raise ValueError(f"facet mask has shape {mask.shape}, expected ({n},)")
    out: dict[str, list[tuple[str, int]]] = {}
    for field in fields:
        c = _column(table, field)
        keep = ~c.missing if mask is None else (mask & ~c.missing)
        values, counts = np.unique(c.text[keep], return_counts=True)
        order = np.lexsort((values, -counts))  # np.unique sorted values, so ties come out by value
        pairs = [(str(values[i]), int(counts[i])) for i in order]
        out[field] = pairs if top is None else pairs[:top]
    return out
