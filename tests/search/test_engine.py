"""Engine behaviour on the tiny catalog, where the right answers are known by construction."""

from __future__ import annotations

import json

import numpy as np
import pytest

from prodsearch.errors import EncoderMismatchError, IndexNotFoundError, ProductNotFoundError, QueryError
from prodsearch.search.engine import Engine, matched_attributes


def ids(resp):
    return [r.id for r in resp.results]


def test_image_query_with_catalog_photo_returns_that_product_first(tiny_engine, tiny_catalog):
    for pid in ("p04", "p07", "p10"):
        resp = tiny_engine.search(image=tiny_catalog.parent / "images" / f"{pid}.jpg", k=3, mode="image")
        assert ids(resp)[0] == pid


def test_lexical_mode_finds_rare_term(tiny_engine):
    resp = tiny_engine.search("waterproof", k=3, mode="lexical")
    assert ids(resp)[0] == "p10"


def test_cross_modal_text_to_image(tiny_engine):
    # "yellow" must rank the two yellow products first by their photos alone.
    resp = tiny_engine.search("yellow", k=2, mode="image")
    assert set(ids(resp)) == {"p07", "p11"}


def test_hybrid_fuses_signals_and_explains(tiny_engine):
    resp = tiny_engine.search("black leather wallet", k=3, explain=True)
    assert ids(resp)[0] == "p08"
    assert resp.signals == ["image", "lexical", "text"]
    e = resp.results[0].explanation
    assert set(e.contributions) == {"image", "lexical", "text"}
    assert sum(e.contributions.values()) == pytest.approx(resp.results[0].score, rel=1e-5)
    assert {"black", "leather", "wallet"} <= set(e.matched_terms)
    assert e.matched_attributes.get("colour") == "black"
    assert e.similarities["image"] > 0.5


def test_filters_restrict_results_and_facets_count(tiny_engine):
    resp = tiny_engine.search("shirt", k=12, filters={"gender": "men"}, facets=["category"])
    assert resp.results and all(r.attributes["gender"] == "men" for r in resp.results)
    assert {r.id for r in resp.results} <= {"p01", "p02", "p04", "p08"}
    counts = dict(resp.facets["category"])
    assert counts == {"shirt": 2, "shoe": 1, "bag": 1}
    resp = tiny_engine.search("red", k=12, filters={"not": {"field": "category", "eq": "shoe"}}, mode="image")
    assert ids(resp)[0] == "p01" and "p06" not in ids(resp)


def test_paging_is_a_slice_of_the_full_ranking(tiny_engine):
    full = ids(tiny_engine.search("shirt", k=12))
    assert ids(tiny_engine.search("shirt", k=3, offset=3)) == full[3:6]


def test_text_plus_image_query_moves_towards_text(tiny_engine, tiny_catalog):
    photo = tiny_catalog.parent / "images" / "p01.jpg"  # a red shirt
    like_this = ids(tiny_engine.search(image=photo, k=1, mode="image"))
    but_blue = ids(tiny_engine.search("blue", image=photo, k=2, mode="image", image_weight=0.3))
    assert like_this == ["p01"] and set(but_blue) == {"p02", "p09"}


def test_negative_text_moves_away(tiny_engine):
    plain = ids(tiny_engine.search("shirt red", k=3, mode="text"))
    assert plain[0] == "p01"
    assert ids(tiny_engine.search("shirt red", k=3, mode="text", negative="red"))[0] != "p01"


def test_similar_and_recommend_exclude_inputs(tiny_engine):
    sim = ids(tiny_engine.similar("p01", by="image", k=3))
    assert "p01" not in sim and sim[0] == "p06"  # the other red product
    rec = ids(tiny_engine.recommend(["p04", "p08"], k=3, by="image"))
    assert not {"p04", "p08"} & set(rec)
    with pytest.raises(ProductNotFoundError, match="nope"):
        tiny_engine.similar("nope")


def test_bad_queries_raise_clear_errors(tiny_engine):
    with pytest.raises(QueryError, match="empty query"):
        tiny_engine.search("   ")
    with pytest.raises(QueryError, match="mode"):
        tiny_engine.search("red", mode="magic")
    with pytest.raises(QueryError, match="colr"):
        tiny_engine.search("red", filters={"colr": "red"})
    with pytest.raises(QueryError, match="weight"):
        tiny_engine.search("red", weights={"bogus": 1})


def test_upsert_and_delete_change_results_and_persist(tiny_engine, tiny_index, fake_embedder, tmp_path):
    from fakes import make_photo
    from prodsearch.catalog.images import file_sha256
    from prodsearch.catalog.schema import Product

    photo = make_photo(tmp_path / "new.jpg", "yellow", shape=3)
    p = Product(
        id="n1",
        title="Yellow raincoat",
        text={"description": "bright"},
        attributes={"colour": "yellow", "category": "jacket", "gender": "women", "price": "70"},
        image_path=str(photo),
        image_hash=file_sha256(photo),
    )
    assert tiny_engine.upsert([p])["added"] == 1
    assert ids(tiny_engine.search("raincoat", k=1, mode="lexical")) == ["n1"]
    tiny_engine.delete(["p07"])
    assert "p07" not in ids(tiny_engine.search("yellow", k=12, mode="image"))
    with pytest.raises(ProductNotFoundError):
        tiny_engine.delete(["does-not-exist"])
    reopened = Engine.open(tiny_index, embedder=fake_embedder)
    try:
        assert ids(reopened.search("raincoat", k=1, mode="lexical")) == ["n1"]
        assert "p07" not in reopened.store
        assert len(reopened) == 12
    finally:
        reopened.close()


def test_open_checks_index_and_encoder(tmp_path, tiny_index):
    with pytest.raises(IndexNotFoundError, match="no prodsearch index"):
        Engine.open(tmp_path / "missing")
    from fakes import FakeImageEncoder, FakeTextEncoder
    from prodsearch.encoders.base import Embedder

    other = Embedder(FakeTextEncoder(), FakeImageEncoder(), aligned=False, name="other")
    with pytest.raises(EncoderMismatchError, match="built with encoder 'fake'"):
        Engine.open(tiny_index, embedder=other)


def test_matched_attributes_needs_every_word():
    attrs = {"colour": "Navy Blue", "type": "Shirts", "gender": "Men"}
    assert matched_attributes("navy blue shirt for men", attrs) == {"colour": "Navy Blue", "gender": "Men"}
    assert matched_attributes("blue", attrs) == {}


def test_response_json_round_trip(tiny_engine):
    d = tiny_engine.search("red", k=2, explain=True).to_dict()
    assert json.loads(json.dumps(d))["results"][0]["explanation"]["contributions"]
    assert np.isfinite(d["results"][0]["score"])
