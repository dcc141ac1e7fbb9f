"""LexicalIndex: BM25 by hand, rare-term ranking, any-language tokenisation, updates, persistence."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from prodsearch.errors import ConfigError, IndexNotFoundError
from prodsearch.index import storage
from prodsearch.index.lexical import LexicalIndex


def test_bm25_scores_hand_computed():
    lx = LexicalIndex()  # k1=1.5, b=0.75
    lx.build([1, 2, 3], ["red shirt", "blue shirt shirt", "red"])
    h = lx.search("shirt", 10)
    # idf = ln(1 + (N - df + .5) / (df + .5)) with N=3, df=2; avgdl = 2
    idf = math.log(1 + 1.5 / 2.5)
    d1 = idf * 1 / (1.5 * (0.25 + 0.75 * 2 / 2) + 1)
    d2 = idf * 2 / (1.5 * (0.25 + 0.75 * 3 / 2) + 2)
    assert h.iids.tolist() == [2, 1]  # doc 3 has no "shirt": not returned at all
    np.testing.assert_allclose(h.scores, [d2, d1], rtol=1e-5)


def test_rare_query_term_ranks_its_document_first():
    texts = [f"cotton shirt model {i}" for i in range(50)] + ["paisley cotton shirt"]
    lx = LexicalIndex()
    lx.build(np.arange(100, 151), texts)
    h = lx.search("Paisley shirt", 5)
    assert h.iids[0] == 150 and len(h) == 5
    assert lx.search("paisley shirt", 5, allowed=[100, 101]).iids.tolist() == [100, 101]


@pytest.mark.parametrize(
    "text, tokens",
    [
        ("Chemise à carreaux ÉTÉ", ["chemise", "à", "carreaux", "été"]),
        ("Herren-Straßenschuhe GRÖSSE 42", ["herren", "strassenschuhe", "grösse", "42"]),
        ("東京 タワー Ｔシャツ", ["東京", "タワー", "tシャツ"]),  # full-width T -> ASCII by NFKC
        ("लाल कुर्ता", ["लाल", "कुर्ता"]),  # combining vowel signs stay inside the word
        ("the red-and-blue t_shirt", ["the", "red", "and", "blue", "t_shirt"]),  # no stopwords by default
    ],
)
def test_tokenize_any_language(text, tokens):
    assert LexicalIndex().tokenize(text) == tokens


def test_unicode_search_and_matched_terms():
    lx = LexicalIndex()
    lx.build([1, 2, 3], ["Straße Schuhe", "東京 タワー Tシャツ", "लाल कुर्ता"])
    assert lx.search("STRASSE", 3).iids.tolist() == [1]
    assert lx.search("タワー", 3).iids.tolist() == [2]
    assert lx.search("कुर्ता", 3).iids.tolist() == [3]
    assert lx.matched_terms("Red Shirts red SHIRT", "red cotton shirt") == ["red", "shirt"]
    assert lx.matched_terms("blue", "red shirt") == []


def test_stopwords_opt_in():
    assert LexicalIndex(stopwords="en").tokenize("the red shirt") == ["red", "shirt"]
    assert LexicalIndex(stopwords=["RED"]).tokenize("the red shirt") == ["the", "shirt"]
    with pytest.raises(ConfigError, match="'fr'"):
        LexicalIndex(stopwords="fr")


def test_empty_or_unknown_query_gives_empty_hits():
    lx = LexicalIndex()
    assert len(lx.search("shirt", 5)) == 0  # empty index
    lx.build([1], ["red shirt"])
    assert len(lx.search("", 5)) == 0
    assert len(lx.search("  ?! ", 5)) == 0
    assert len(lx.search("zzz", 5)) == 0


def test_add_update_remove():
    lx = LexicalIndex()
    lx.build([1, 2], ["red shirt", "blue jeans"])
    lx.add([3, 1], ["green shirt", "yellow dress"])  # 3 new, 1 updated
    assert len(lx) == 3 and lx.search("shirt", 5).iids.tolist() == [3]
    assert lx.search("dress", 5).iids.tolist() == [1]
    assert lx.remove([3, 99]) == 1
    assert len(lx.search("shirt", 5)) == 0 and 3 not in lx and 2 in lx
    assert lx.remove([1, 2]) == 2 and len(lx.search("jeans", 5)) == 0


def test_save_load_round_trip(tmp_path):
    lx = LexicalIndex(stopwords="en", k1=1.2)
    lx.build([5, 6, 7], ["the red shirt", "a blue shirt", "東京 タワー"])
    lx.save(tmp_path)
    back = LexicalIndex.load(tmp_path)
    assert back.params() == lx.params() and back.iids.tolist() == [5, 6, 7]
    for q in ("red shirt", "タワー", "the"):
        assert back.search(q, 5).to_dict() == lx.search(q, 5).to_dict()
    back.add([8], ["red dress"])  # tokens were restored, so incremental updates still work
    assert back.search("red", 5).iids.tolist() == [5, 8]  # equal BM25 scores: smaller iid first
    assert back.search("shirt", 5).iids.tolist() == lx.search("shirt", 5).iids.tolist()
    empty = LexicalIndex()
    empty.save(tmp_path / "empty")
    assert len(LexicalIndex.load(tmp_path / "empty")) == 0


def test_crash_mid_save_keeps_previous(tmp_path, monkeypatch):
    lx = LexicalIndex()
    lx.build([1], ["red shirt"])
    lx.save(tmp_path)
    lx.add([2], ["blue shirt"])

    def crash(*a, **k):
        raise OSError("power cut (simulated)")

    monkeypatch.setattr(storage, "atomic_write_text", crash)
    with pytest.raises(OSError, match="simulated"):
        lx.save(tmp_path)
    monkeypatch.undo()
    assert LexicalIndex.load(tmp_path).iids.tolist() == [1]
    monkeypatch.setattr(np, "save", crash)  # dies on the first file this time
    with pytest.raises(OSError, match="simulated"):
        lx.save(tmp_path)
    monkeypatch.undo()
    assert LexicalIndex.load(tmp_path).iids.tolist() == [1]
    assert not [p for p in os.listdir(tmp_path) if "tmp" in p]


def test_corrupt_or_missing_gives_clear_error(tmp_path):
    with pytest.raises(IndexNotFoundError, match="lexical.json"):
        LexicalIndex.load(tmp_path / "nowhere")
    lx = LexicalIndex()
    lx.build([1, 2], ["red shirt", "blue shirt"])
    lx.save(tmp_path)
    gen = tmp_path / json.loads((tmp_path / "lexical.json").read_text())["generation"]
    (gen / "docs.txt").write_text("tampered")
    with pytest.raises(IndexNotFoundError, match=r"docs\.txt"):
        LexicalIndex.load(tmp_path)
