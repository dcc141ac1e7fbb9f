"""Compound product words in the keyword tokenizer (issue 11, item 12)."""

from __future__ import annotations

import numpy as np
import pytest

from prodsearch.index.lexical import LexicalIndex
from prodsearch.index.tokenize import words


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Navy Blue T-shirt", ["navy", "blue", "tshirt"]),
        ("t shirt", ["tshirt"]),
        ("TSHIRT", ["tshirt"]),
        ("T‐Shirts for men", ["tshirts", "for", "men"]),  # Unicode hyphen
        ("V-neck A-line dress", ["vneck", "aline", "dress"]),
        ("v neck top", ["vneck", "top"]),
        ("navy blue shirt", ["navy", "blue", "shirt"]),
        ("3-pack socks, size-m", ["3", "pack", "socks", "size", "m"]),  # no lone letter before the hyphen
        ("xl-t", ["xl", "t"]),
        ("a shirt and a t", ["a", "shirt", "and", "a", "t"]),  # only the common spaced compounds join
        ("Straße ＡＢＣ", ["strasse", "abc"]),
    ],
)
def test_words_hand_computed(text, expected):
    assert words(text) == expected


def test_shirt_does_not_match_t_shirts_and_every_spelling_finds_them():
    docs = ["Probase Men Navy Blue T-shirt", "Men Navy Blue Shirt", "Women Blue Tshirt", "Navy blue t shirt"]
    lex = LexicalIndex()
    lex.build(np.arange(4), docs)
    hits = lex.search("navy blue shirt for men", k=4)
    assert int(hits.iids[0]) == 1  # the shirt first: "shirt" is not a word of "T-shirt"
    assert "shirt" not in lex.tokenize(docs[0])
    for query in ("t-shirt", "tshirt", "T shirt"):
        assert sorted(int(i) for i in lex.search(query, k=4).iids) == [0, 2, 3], query
