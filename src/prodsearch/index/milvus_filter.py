"""The typed filter (:mod:`prodsearch.index.filters`) as a Milvus boolean expression, and the scalar
fields that make the translation exact. Pure functions, no pymilvus import.

Each attribute ``f`` (``a<i>`` in Milvus, names are not always identifiers) is stored as five
scalar fields derived exactly as :func:`prodsearch.index.filters.evaluate` derives its columns:

===============  =================  =================================================
``a<i>_text``    VARCHAR            the value as text (``""`` = missing); range on strings
``a<i>_key``     VARCHAR            :func:`normalize_keyword` of it; ``eq`` / ``in`` on strings
``a<i>_num``     DOUBLE             the value as a number (0 where it is not one)
``a<i>_isnum``   BOOL               whether it parses as a finite number
``a<i>_tok``     ARRAY<VARCHAR>     its keyword tokens; ``match``
===============  =================  =================================================

so that every condition is one indexed comparison inside Milvus, never a Python pass over rows.
A missing value matches no condition (every condition is guarded by ``a<i>_text != ""``), as in
the embedded evaluator; a field that the collection does not have is missing everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from prodsearch.index.filters import (
    And,
    FieldCondition,
    Filter,
    Not,
    Or,
    _as_text,
    _missing,
    _to_number,
    keyword_tokens,
    normalize_keyword,
)

TRUE = "(id >= 0)"  # iids are non-negative: a portable literal true/false
FALSE = "(id < 0)"
_OPS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
SUFFIXES = ("text", "key", "num", "isnum", "tok")


def quote(value: str) -> str:
    """A Milvus string literal: double quotes, C-style escapes for backslash, quotes and newlines."""
    out = value.replace("\\", "\\\\").replace('"', '\\"')
    out = out.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return f'"{out}"'


def _number(value: float) -> str:
    return repr(float(value))


def scalar_fields(value: Any) -> dict[str, Any]:
    """The five derived values of one attribute value (see the module docstring), by suffix."""
    if _missing(value):
        return {"text": "", "key": "", "num": 0.0, "isnum": False, "tok": []}
    text = _as_text(value)
    num = _to_number(value)
    return {
        "text": text,
        "key": normalize_keyword(text),
        "num": 0.0 if num is None else num,
        "isnum": num is not None,
        "tok": sorted(keyword_tokens(text)),
    }


def to_expression(flt: Filter | None, fields: Mapping[str, str]) -> str:
    """``flt`` as a Milvus boolean expression; ``fields`` maps attribute names to Milvus prefixes."""
    if flt is None:
        return ""
    return _expr(flt, fields)


def _expr(flt: Filter, fields: Mapping[str, str]) -> str:
    if isinstance(flt, And):
        return "(" + " and ".join(_expr(f, fields) for f in flt.filters) + ")" if flt.filters else TRUE
    if isinstance(flt, Or):
        return "(" + " or ".join(_expr(f, fields) for f in flt.filters) + ")" if flt.filters else FALSE
    if isinstance(flt, Not):
        return f"(not {_expr(flt.filter, fields)})"
    prefix = fields.get(flt.field)
    if prefix is None:  # the collection has no such attribute: missing everywhere
        return FALSE
    return f'({prefix}_text != "" and {_condition(flt, prefix)})'


def _eq(prefix: str, target: Any) -> str:
    if isinstance(target, str):
        return f"{prefix}_key == {quote(normalize_keyword(target))}"
    return f"({prefix}_isnum and {prefix}_num == {_number(target)})"


def _condition(c: FieldCondition, prefix: str) -> str:
    if c.eq is not None:
        return _eq(prefix, c.eq)
    if c.any_of is not None:
        parts = []
        strs = sorted({normalize_keyword(v) for v in c.any_of if isinstance(v, str)})
        if strs:
            parts.append(f"{prefix}_key in [{', '.join(quote(s) for s in strs)}]")
        parts += [_eq(prefix, v) for v in c.any_of if not isinstance(v, str)]
        return "(" + " or ".join(parts) + ")" if parts else FALSE
    if c.match is not None:
        words = sorted(keyword_tokens(c.match))
        return f"array_contains_all({prefix}_tok, [{', '.join(quote(w) for w in words)}])"
    parts = []
    for op, bound in c.range or ():
        sym = _OPS[op]
        by_text = f"{prefix}_text {sym} {quote(_as_text(bound))}"
        bnum = _to_number(bound)
        if bnum is None:
            parts.append(by_text)
        else:  # numbers compare as numbers, other values as text (as filters.evaluate does)
            parts.append(
                f"(({prefix}_isnum and {prefix}_num {sym} {_number(bnum)}) or (not {prefix}_isnum and {by_text}))"
            )
    return "(" + " and ".join(parts) + ")" if parts else TRUE


def ids_expression(iids: Sequence[int]) -> str:
    """``id in [...]``: restricts a search to iids the engine already resolved (``allowed``)."""
    return f"id in [{', '.join(str(int(i)) for i in iids)}]" if len(iids) else FALSE
