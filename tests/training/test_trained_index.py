"""A trained model adds a 'joint' signal beside the untuned vectors (never replaces them), and a
catalog photo used as a query returns its own product first in every mode and fusion (issue 8)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import TinyFactory

from prodsearch.catalog.readers import read_catalog
from prodsearch.search.builder import build_index
from prodsearch.search.engine import Engine
from prodsearch.training.embedder import load_index_embedder
from prodsearch.training.main import train


@pytest.fixture(scope="module", params=["heads", "neighbour-titles"])
def trained_index(request, tmp_path_factory, bert_dir):
    """An index built with a trained run: heads alone, or with neighbour titles forced on (the tiny
    catalog has too few validation titles for the real bar), whose photo queries differ from the
    photos the index stores."""
    from fakes import write_tiny_catalog
    from prodsearch.training import neighbours as nb

    root = tmp_path_factory.mktemp("trained")
    catalog = write_tiny_catalog(root / "shop")
    products = read_catalog(catalog).products
    cfg = {
        "epochs": 3,
        "batch_size": 8,
        "text_tower": "fake-text",
        "image_tower": "fake-image",
        "val_fraction": 0.2,
        "test_fraction": 0.2,
        "patience": 0,
        "attribute_min_count": 2,
    }
    with pytest.MonkeyPatch.context() as mp:
        if request.param == "neighbour-titles":
            mp.setattr(nb, "MIN_QUERIES", 2)
            mp.setattr(nb, "MIN_GAIN", -1.0)
        res = train(None, root / "run", cfg, products=products, factory=TinyFactory(bert_dir), progress=False)
    assert bool(res.neighbour_titles.get("used")) == (request.param == "neighbour-titles")
    emb = load_index_embedder(root / "run", factory=TinyFactory(bert_dir))
    build_index(catalog, root / "idx", embedder=emb)
    engine = Engine.open(root / "idx", embedder=emb)
    yield engine, catalog, emb
    engine.close()


def test_joint_vectors_sit_beside_untouched_untuned_vectors(trained_index):
    engine, catalog, emb = trained_index
    assert set(engine.vectors) == {"text", "image", "joint"}
    assert engine.cross_modal and not engine.aligned
    photo = catalog.parent / "images" / "p04.jpg"
    iid = engine.store.iid_of(["p04"])[0]
    untuned = emb.image.encode([str(photo)])[0]
    assert np.allclose(engine.vectors["image"].get(np.asarray([iid]))[0], untuned, atol=1e-5)
    joint = emb.joint.image.encode([str(photo)])[0]
    assert np.allclose(engine.vectors["joint"].get(np.asarray([iid]))[0], joint, atol=1e-5)
    assert emb.joint_from_base("image", untuned[None]) == pytest.approx(joint[None], abs=1e-5)


def test_a_photo_query_reaches_the_joint_space_as_the_model_embeds_queries(trained_index):
    from prodsearch.search.query import encode_query

    engine, catalog, emb = trained_index
    photo = catalog.parent / "images" / "p04.jpg"
    q = encode_query(engine, None, str(photo), None, 1.0, 0.0, {})
    as_query = emb.joint.encode_image_queries([str(photo)])[0]
    assert q["joint"] == pytest.approx(as_query, abs=1e-5)
    assert emb.joint_from_base("image", emb.image.encode([str(photo)]), query=True)[0] == pytest.approx(
        as_query, abs=1e-5
    )
    model = emb.joint.image.model
    if model.neighbours is not None:  # the heads alone, not the indexed photo's look-alike titles
        stored = engine.vectors["joint"].get(engine.store.iid_of(["p04"]))[0]
        assert not np.allclose(as_query, stored, atol=1e-3)
        assert np.allclose(as_query[: model.embed_dim], 0.0)


@pytest.mark.parametrize("fusion", ["rrf", "weighted"])
@pytest.mark.parametrize("mode", ["hybrid", "image"])
def test_catalog_photo_finds_its_product_first_in_every_mode(trained_index, mode, fusion):
    engine, catalog, _ = trained_index
    for pid in ("p01", "p04", "p07", "p10", "p12"):
        resp = engine.search(image=catalog.parent / "images" / f"{pid}.jpg", k=3, mode=mode, fusion=fusion)
        assert resp.results[0].id == pid, (mode, fusion, pid)


def test_text_query_reaches_photos_through_the_joint_space(trained_index):
    engine, _, _ = trained_index
    resp = engine.search("yellow", k=2, mode="image")
    assert resp.signals == ["joint"]
    assert len(resp.results) == 2


def test_same_photo_is_pinned_even_when_the_fusion_ignores_untuned_photos(trained_index):
    """Weights that leave only the trained space (where same-colour products nearly coincide) still
    return the exact photo's product first: it is pinned, not out-voted."""
    engine, catalog, _ = trained_index
    only_joint = {"lexical": 0.0, "text": 0.0, "image": 0.0, "joint": 1.0}
    for pid in ("p01", "p02", "p04", "p05", "p06", "p07", "p08", "p09", "p11", "p12"):
        photo = catalog.parent / "images" / f"{pid}.jpg"
        resp = engine.search(image=photo, k=3, weights=only_joint, explain=True)
        assert resp.results[0].id == pid
        assert resp.results[0].explanation.contributions.get("same_photo") == 1.0


def test_uncalibrated_trained_signal_gets_no_weight_in_fused_modes(trained_index):
    """Without a calibration vouching for it, the joint signal does not change hybrid results: they
    are exactly what the untuned signals give (its own "image" mode still uses it)."""
    engine, catalog, _ = trained_index
    assert engine.calibration is None
    resp = engine.search("black leather wallet", k=5)
    assert resp.signals == ["lexical", "text"]
    untuned = engine.search("black leather wallet", k=5, weights={"joint": 0.0, "image": 0.0})
    assert [r.id for r in resp.results] == [r.id for r in untuned.results]
    photo = engine.search(image=catalog.parent / "images" / "p03.jpg", k=5)
    assert photo.signals == ["image"]
    assert engine.search("black", k=3, mode="image").signals == ["joint"]
