"""A fused query whose weighted signals find nothing falls back to the signals weighed 0 (a
calibration that trusts only BM25 must not answer "no results" to a query with no catalog word)."""

from __future__ import annotations


def test_no_lexical_match_falls_back_to_the_text_vectors(tiny_engine):
    only_bm25 = {"lexical": 1.0, "text": 0.0, "image": 0.0}
    assert tiny_engine.search("shirt", weights=only_bm25, k=3).results  # BM25 answers what it can
    resp = tiny_engine.search("zzqx wvvk", weights=only_bm25, k=3)  # no catalog word: BM25 finds nothing
    assert len(resp.results) == 3
    rest = tiny_engine.search("zzqx wvvk", weights={"lexical": 0.0, "text": 1.0, "image": 1.0}, k=3)
    assert [r.id for r in resp.results] == [r.id for r in rest.results]  # the others, weighed equally


def test_a_mode_with_one_signal_still_answers_empty(tiny_engine):
    assert tiny_engine.search("zzqx wvvk", mode="lexical", k=3).results == []
