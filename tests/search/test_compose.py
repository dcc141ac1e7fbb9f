"""Photo + text with the photo as the anchor (issue 11, item 14), against brute force."""

from __future__ import annotations

import numpy as np

from prodsearch.search import compose


def brute_anchor_ids(engine, photo, n: int) -> set[str]:
    """The ``n`` products whose image vectors are nearest the photo's, by a full scan."""
    q = engine.embedder.encode_images([photo])[0]
    products = [p for p in engine.store.iter_products() if p.image_path]
    vecs = engine.embedder.encode_images([p.image_path for p in products])
    order = np.argsort(-(vecs @ q), kind="stable")[:n]
    return {products[i].id for i in order}


def test_every_result_looks_like_the_photo_and_the_text_reorders_them(tiny_engine, tiny_catalog, monkeypatch):
    photo = str(tiny_catalog.parent / "images" / "p06.jpg")  # red high heels
    monkeypatch.setattr(compose, "ANCHOR_POOL", 4)
    anchors = brute_anchor_ids(tiny_engine, photo, 4)
    anchored = [r.id for r in tiny_engine.search("black", image=photo, k=10)]
    assert set(anchored) <= anchors and len(anchored) == len(anchors)
    free = [r.id for r in tiny_engine.search("black", image=photo, k=10, anchor=False)]
    assert set(free[:4]) != anchors  # without the anchor the text pulls in products unlike the photo
    # within the anchor set the order follows the text: the anchored ranking is not just the photo's
    photo_only = [r.id for r in tiny_engine.search(image=photo, k=4, mode="image")]
    assert set(photo_only) == anchors


def test_filters_apply_inside_the_anchor_set(tiny_engine, tiny_catalog, monkeypatch):
    photo = str(tiny_catalog.parent / "images" / "p06.jpg")
    monkeypatch.setattr(compose, "ANCHOR_POOL", 4)
    got = tiny_engine.search("black", image=photo, k=10, filters={"gender": "men"})
    assert got.results and all(r.attributes["gender"] == "men" for r in got.results)


def test_a_filter_that_leaves_nothing_gives_an_empty_answer(tiny_engine, tiny_catalog):
    photo = tiny_catalog.parent / "images" / "p01.jpg"
    resp = tiny_engine.search("black", image=photo, k=5, filters={"colour": "purple"})
    assert resp.results == []
