"""Filters: parsing, hand-computed masks, facets, and evaluate/matches congruence on random filters."""

from __future__ import annotations

import random

import numpy as np
import pytest

from prodsearch.errors import QueryError
from prodsearch.index.filters import (
    And,
    FieldCondition,
    Not,
    Or,
    evaluate,
    facet_counts,
    fields_of,
    matches,
    parse_filter,
)

TABLE = {
    "gender": np.array(["Men", "Women", "Men", "", "Unisex", "Women"], dtype=object),
    "colour": np.array(["Red", "Blue", "Blue", "Red", None, "Green"], dtype=object),
    "year": np.array(["2011", "2012", "2015.0", "2016", "", "n/a"], dtype=object),
    "size": np.array(["S", "M", "L", "XL", "M", ""], dtype=object),
}
FIELDS = sorted(TABLE)


def rows(mask):
    return np.nonzero(mask)[0].tolist()


def row_attrs(i):
    return {f: TABLE[f][i] for f in TABLE}


def test_parse_forms():
    assert parse_filter({"field": "gender", "eq": "Men"}) == FieldCondition("gender", eq="Men")
    assert parse_filter({"field": "colour", "in": ["Red", "Blue"]}) == FieldCondition(
        "colour", any_of=("Red", "Blue")
    )
    assert parse_filter({"field": "year", "range": {"lt": 2016, "gte": 2012}}) == FieldCondition(
        "year", range=(("gte", 2012), ("lt", 2016))
    )
    f = parse_filter({"or": [{"not": {"field": "gender", "eq": "Men"}}, {"and": []}]})
    assert f == Or((Not(FieldCondition("gender", eq="Men")), And(())))
    assert parse_filter({"gender": "Men", "colour": ["Red", "Blue"]}) == And(
        (FieldCondition("gender", eq="Men"), FieldCondition("colour", any_of=("Red", "Blue")))
    )
    assert parse_filter('[{"gender": "Men"}]') == And((FieldCondition("gender", eq="Men"),))
    f = parse_filter({"and": [{"gender": "Men"}, {"field": "year", "range": {"gt": "2011"}}]})
    assert parse_filter(f.to_dict()) == f and fields_of(f) == {"gender", "year"}


def test_unknown_field_names_it_and_lists_valid_ones():
    with pytest.raises(QueryError) as err:
        parse_filter({"field": "colr", "eq": "Red"}, valid_fields=FIELDS)
    assert "'colr'" in str(err.value) and "'colour'" in str(err.value)
    with pytest.raises(QueryError, match="'brand'"):
        parse_filter({"or": [{"brand": "Nike"}]}, valid_fields=FIELDS)
    with pytest.raises(QueryError, match="'brand'"):
        evaluate(parse_filter({"brand": "Nike"}), TABLE)


@pytest.mark.parametrize(
    "obj, words",
    [
        ({"field": "colour", "in": "Red"}, ["'in'", "list"]),
        ({"field": "year", "range": {"gte": [2012]}}, ["'gte'", "string or a number"]),
        ({"field": "year", "range": {"after": 2012}}, ["'after'", "gte"]),
        ({"field": "year", "range": 2012}, ["'range'", "object"]),
        ({"field": "gender", "eq": True}, ["'eq'", "bool"]),
        ({"field": "gender", "eq": "Men", "in": ["Men"]}, ["exactly one"]),
        ({"field": "gender", "like": "M"}, ["'like'"]),
        ({"and": {"gender": "Men"}}, ["'and'", "list"]),
        ({"gender": {"gte": 1}}, ["'gender'", "range"]),
        (42, ["object", "42"]),
        ("{not json", ["JSON"]),
    ],
)
def test_wrong_types_name_the_key_and_expected_type(obj, words):
    with pytest.raises(QueryError) as err:
        parse_filter(obj, valid_fields=FIELDS)
    for w in words:
        assert w in str(err.value)


@pytest.mark.parametrize(
    "obj, expected",
    [
        ({"gender": "Men"}, [0, 2]),
        ({"colour": ["Red", "Green"]}, [0, 3, 5]),
        ({"colour": []}, []),
        ({"and": []}, [0, 1, 2, 3, 4, 5]),
        ({"or": []}, []),
        # numeric: 2012 and "2015.0" in [2012, 2016); "n/a" is compared as text: "n/a" < "2016" is False
        ({"field": "year", "range": {"gte": 2012, "lt": 2016}}, [1, 2]),
        ({"field": "year", "eq": 2015}, [2]),
        ({"field": "year", "eq": "2015"}, []),  # a string compares exactly with the text "2015.0"
        # text range: "S" >= "M", "XL" >= "M", "M" >= "M"; "L" < "M"; missing never matches
        ({"field": "size", "range": {"gte": "M"}}, [0, 1, 3, 4]),
        # missing values fail the condition, so "not" keeps them (row 3 has no gender)
        ({"not": {"gender": "Men"}}, [1, 3, 4, 5]),
        ({"or": [{"gender": "Unisex"}, {"colour": "Blue", "size": "L"}]}, [2, 4]),
    ],
)
def test_evaluate_hand_computed(obj, expected):
    flt = parse_filter(obj, valid_fields=FIELDS)
    mask = evaluate(flt, TABLE)
    assert mask.dtype == bool and rows(mask) == expected
    assert [i for i in range(6) if matches(flt, row_attrs(i))] == expected


def test_matches_missing_key_is_missing_value():
    assert not matches(parse_filter({"gender": "Men"}), {})
    assert matches(parse_filter({"not": {"gender": "Men"}}), {})


def test_facet_counts_hand_computed():
    assert facet_counts(TABLE, ["colour", "gender"]) == {
        "colour": [("Blue", 2), ("Red", 2), ("Green", 1)],
        "gender": [("Men", 2), ("Women", 2), ("Unisex", 1)],
    }
    mask = np.array([True, True, True, False, False, False])
    assert facet_counts(TABLE, ["colour"], mask=mask, top=1) == {"colour": [("Blue", 2)]}
    with pytest.raises(QueryError, match="'brand'"):
        facet_counts(TABLE, ["brand"])


# ---------------------------------------------------------------------------- congruence
def _random_table(rng: random.Random, n: int) -> dict[str, np.ndarray]:
    words = ["a", "b", "B", "ab", "ba", "10", "9", "9.5", "-1", "1e1", "", None, "x y"]
    nums = ["1", "2", "3", "10", "2.5", "", None, "n/a", "007"]
    return {
        "w": np.array([rng.choice(words) for _ in range(n)], dtype=object),
        "n": np.array([rng.choice(nums) for _ in range(n)], dtype=object),
        "m": np.array([rng.choice(words + nums) for _ in range(n)], dtype=object),
    }


def _random_filter(rng: random.Random, depth: int = 0) -> dict:
    values = ["a", "b", "10", "9", "1", "2.5", "007", "n/a", "x y", 1, 2, 10, 2.5, 7, -1]
    kind = rng.choice(["eq", "in", "range", "short"] + (["and", "or", "not"] * 2 if depth < 3 else []))
    field = rng.choice(["w", "n", "m"])
    if kind == "eq":
        return {"field": field, "eq": rng.choice(values)}
    if kind == "in":
        return {"field": field, "in": rng.sample(values, rng.randint(0, 4))}
    if kind == "range":
        ops = rng.sample(["gt", "gte", "lt", "lte"], rng.randint(1, 2))
        return {"field": field, "range": {op: rng.choice(values) for op in ops}}
    if kind == "short":
        return {field: rng.choice(values) if rng.random() < 0.5 else rng.sample(values, 2)}
    if kind == "not":
        return {"not": _random_filter(rng, depth + 1)}
    return {kind: [_random_filter(rng, depth + 1) for _ in range(rng.randint(0, 3))]}


def test_evaluate_agrees_with_matches_on_100_random_filters():
    rng = random.Random(1234)
    table = _random_table(rng, 300)
    hits = 0
    for _ in range(100):
        obj = _random_filter(rng)
        flt = parse_filter(obj, valid_fields=list(table))
        mask = evaluate(flt, table)
        per_row = np.array([matches(flt, {f: table[f][i] for f in table}) for i in range(300)])
        bad = np.nonzero(mask != per_row)[0]
        assert bad.size == 0, (
            f"filter {obj} disagrees on rows {bad[:5].tolist()}: {[table['m'][i] for i in bad[:5]]}"
        )
        hits += int(mask.sum())
    assert 0 < hits < 100 * 300  # the random filters are neither all-pass nor all-fail


def test_evaluate_on_str_dtype_columns_and_cache_is_per_array():
    t = {"c": np.array(["x", "y", "x"])}
    assert rows(evaluate(parse_filter({"c": "x"}), t)) == [0, 2]
    t2 = {"c": np.array(["y", "y", "x"])}  # a new array must not reuse the old one's cached data
    assert rows(evaluate(parse_filter({"c": "x"}), t2)) == [2]


def test_long_values_use_object_columns_with_same_semantics():
    long = "x" * 300
    t = {"d": np.array([long, "short", "", "y" * 400], dtype=object)}
    for obj, expected in [
        ({"d": long}, [0]),
        ({"field": "d", "range": {"gt": "x"}}, [0, 3]),
        ({"d": ["short"]}, [1]),
    ]:
        flt = parse_filter(obj)
        assert rows(evaluate(flt, t)) == expected
        assert [i for i in range(4) if matches(flt, {"d": t["d"][i]})] == expected
