"""The weak-match signal (issue 11, item 11): calibrated against brute force on the tiny index."""

from __future__ import annotations

import numpy as np
import pytest

from prodsearch.search.relevance import assess, calibrate, gibberish_queries


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PRODSEARCH_CACHE", str(tmp_path / "cache"))


def brute_top1(engine, texts: list[str]) -> np.ndarray:
    """Best cosine of each text against every product's text vector, by a full scan."""
    store_texts = [p.full_text() for p in engine.store.iter_products()]
    docs = engine.embedder.encode_text(store_texts)
    return (engine.embedder.encode_text(texts) @ docs.T).max(1)


def test_gibberish_is_seeded_and_nonsense():
    a, b = gibberish_queries(10, seed=0), gibberish_queries(10, seed=0)
    assert a == b and len(set(a)) == 10 and gibberish_queries(10, seed=1) != a
    assert all(w.isalpha() and 4 <= len(w) <= 10 for q in a for w in q.split())


def test_cutoff_is_the_best_gibberish_similarity_by_brute_force(tiny_engine):
    cutoff = calibrate(tiny_engine)
    assert cutoff == pytest.approx(float(brute_top1(tiny_engine, gibberish_queries()).max()), abs=1e-5)
    calls = tiny_engine.embedder.text.calls
    assert calibrate(tiny_engine) == cutoff and tiny_engine.embedder.text.calls == calls  # cached


def test_weak_exactly_when_no_word_matches_and_meaning_is_no_closer_than_gibberish(tiny_engine):
    cutoff = calibrate(tiny_engine)
    assert not assess(tiny_engine, "waterproof jacket").weak  # words of the catalog
    for q in ["qwertyuiop zxcv", "zzyzx", "plorf gandu", "red"]:
        strength = assess(tiny_engine, q)
        lexical = len(tiny_engine.lexical.search(q, 1).iids) > 0
        best = float(brute_top1(tiny_engine, [q])[0])
        assert strength.weak == (not lexical and best <= cutoff + 1e-6), (q, strength, best, cutoff)
        if not lexical:
            assert strength.best_similarity == pytest.approx(best, abs=1e-5)
    assert assess(tiny_engine, "qwertyuiop zxcv", mode="lexical").weak  # keywords only, no model
    assert not assess(tiny_engine, "qwertyuiop", has_image=True).weak  # photo queries are not judged
