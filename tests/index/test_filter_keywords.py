"""Keyword normalisation for ``eq``/``in`` and the token-match operator (issue 11, item 5)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from prodsearch.errors import QueryError
from prodsearch.index.filters import (
    FieldCondition,
    evaluate,
    keyword_tokens,
    matches,
    normalize_keyword,
    parse_filter,
)

COLOURS = np.array(
    ["Grey", "Light Grey", "grey ", "Crème", "Navy Blue", "", "Greyish", "blue-navy"], dtype=object
)
TABLE = {"colour": COLOURS}


def rows(mask: np.ndarray) -> list[int]:
    return [int(i) for i in np.nonzero(mask)[0]]


def both(obj) -> list[int]:
    """Rows passing ``obj``, checked to agree between the vectorised and the per-row evaluation."""
    flt = parse_filter(obj, valid_fields=["colour"])
    vec = rows(evaluate(flt, TABLE))
    assert vec == [i for i in range(len(COLOURS)) if matches(flt, {"colour": COLOURS[i]})]
    return vec


def test_normalize_keyword_hand_computed():
    assert normalize_keyword("  Crème   Brûlée ") == "creme brulee"
    assert normalize_keyword("GREY") == "grey"
    assert normalize_keyword("Straße") == "strasse"  # casefold, not lower
    assert keyword_tokens("Light-Grey") == {"light", "grey"}


@pytest.mark.parametrize(
    "obj, expected",
    [
        ({"colour": "grey"}, [0, 2]),  # case and surrounding whitespace ignored, "Light Grey" is not equal
        ({"colour": "creme"}, [3]),  # accents ignored
        ({"colour": ["GREY", "navy  blue"]}, [0, 2, 4]),
        ({"field": "colour", "match": "grey"}, [0, 1, 2]),  # a word of the value; "Greyish" is another word
        ({"field": "colour", "match": "navy blue"}, [4, 7]),  # every word, any order, any separator
        ({"colour": {"match": "LIGHT"}}, [1]),  # shorthand form
        ({"not": {"field": "colour", "match": "grey"}}, [3, 4, 5, 6, 7]),  # missing passes "not"
    ],
)
def test_keyword_filters_hand_computed(obj, expected):
    assert both(obj) == expected


def test_match_round_trips_and_rejects_empty_queries():
    flt = parse_filter({"field": "colour", "match": "grey"})
    assert flt == FieldCondition("colour", match="grey")
    assert parse_filter(flt.to_dict()) == flt
    for bad in ("", "  -- ", 3):
        with pytest.raises(QueryError, match="'match' expects a string"):
            parse_filter({"field": "colour", "match": bad})
    with pytest.raises(QueryError, match="'match'"):
        parse_filter({"colour": {"like": "grey"}})


def test_token_match_agrees_with_brute_force_on_random_values():
    rng = random.Random(7)
    words = ["Grey", "grey", "Light", "blue", "Navy", "crème", "creme", "x"]
    values = np.array([" ".join(rng.sample(words, rng.randint(0, 3))) for _ in range(400)], dtype=object)
    for _ in range(50):
        query = " ".join(rng.sample(words, rng.randint(1, 2)))
        mask = evaluate(parse_filter({"field": "c", "match": query}), {"c": values})
        want = {normalize_keyword(w) for w in query.split()}
        brute = [i for i, v in enumerate(values) if want <= {normalize_keyword(w) for w in v.split()}]
        assert rows(mask) == brute, query
