"""``run_evaluation`` on a real index folder and on a catalog file (toy encoders from tests/fakes.py),
its error messages, and (slow) a small run on the shared fashion catalog with the real encoders."""

from __future__ import annotations

import json

import pytest

from prodsearch.errors import ConfigError, EncoderMismatchError
from prodsearch.evaluation.runner import run_evaluation

pytest.importorskip("prodsearch.catalog.store", reason="the product store is not written yet")


def test_index_end_to_end(tiny_index, fake_embedder, tmp_path):
    out = tmp_path / "report"
    res = run_evaluation(
        tiny_index, out, embedder=fake_embedder, slice_by="gender", progress=False, max_queries=50
    )
    data = json.loads((out / "metrics.json").read_text())
    assert data["systems"] == json.loads(json.dumps(res["systems"]))
    assert {"bm25", "dense-text", "image", "hybrid"} <= set(data["systems"])
    assert data["config"]["fields"]["type"] == "category"  # chosen by name hint
    assert data["config"]["fields"]["colour"] == "colour"
    assert data["config"]["target"]["kind"] == "index"
    assert data["config"]["corpus"]["products"] == 12
    assert (out / "report.md").is_file() and (out / "report.html").is_file()
    for proto in ("title2image", "attributes", "image2product"):
        assert proto in data["queries"] or proto in data["skipped"]["protocols"]


def test_catalog_end_to_end(tiny_catalog, tiny_mapping, fake_embedder, tmp_path):
    res = run_evaluation(
        tiny_catalog,
        tmp_path / "r",
        mapping=tiny_mapping,
        embedder=fake_embedder,
        protocols=["image2product"],
        progress=False,
    )
    assert res["config"]["target"]["kind"] == "catalog"
    assert res["systems"]["image"]["image2product/hit@10"] >= 0.0


def test_bad_input(tiny_index, fake_embedder, tmp_path):
    with pytest.raises(ConfigError, match="'size'"):
        run_evaluation(tiny_index, tmp_path / "a", embedder=fake_embedder, slice_by="size", progress=False)
    with pytest.raises(ConfigError, match="neither a prodsearch index"):
        run_evaluation(tmp_path / "nowhere", tmp_path / "b", progress=False)
    # a training run whose products are not in this index: refuse, naming both
    run = tmp_path / "other-run"
    run.mkdir()
    (run / "split.json").write_text(json.dumps({"train": ["x1", "x2"], "val": ["x3"], "test": ["x4"]}))
    with pytest.raises(EncoderMismatchError, match="other-run.*does not match"):
        run_evaluation(tiny_index, tmp_path / "c", embedder=fake_embedder, models=[str(run)], progress=False)


@pytest.mark.slow
def test_shared_catalog_small(shared_catalog, tmp_path):
    mapping = None  # the detected mapping (tests/catalog checks what detection finds here)
    res = run_evaluation(
        shared_catalog,
        tmp_path / "r",
        mapping=mapping,
        limit=200,
        max_queries=50,
        slice_by="gender",
        progress=False,
    )
    assert res["config"]["fields"]["type"] == "articleType"
    assert res["systems"]["image"]["image2product/hit@10"] > 0.5
    assert "aligned" in res["skipped"]["systems"]["image"]["title2image"]


def test_an_index_is_also_scored_as_it_is_served(tiny_index, fake_embedder, tmp_path):
    """'served' is Engine.search itself; on an uncalibrated exact index its hybrid ranking is the
    evaluation's own RRF of the same signals (two implementations of one thing agree)."""
    from prodsearch.evaluation.systems import ServedSystem, SignalSystem
    from prodsearch.search.engine import Engine

    res = run_evaluation(tiny_index, tmp_path / "r", embedder=fake_embedder, progress=False, max_queries=50)
    served, hybrid = res["systems"]["served"], res["systems"]["hybrid"]
    assert served["attributes/ndcg@10"] == pytest.approx(hybrid["attributes/ndcg@10"])
    assert "image2product/hit@1" in served
    with Engine.open(tiny_index, embedder=fake_embedder) as engine:
        ids = [p.id for p in engine.store.iter_products()]
        system = ServedSystem(engine, ids)
        got = system.rank_positions(["red shirt", "leather bag"], "text", 5)
        for row, q in zip(got.tolist(), ["red shirt", "leather bag"], strict=True):
            assert [ids[p] for p in row if p >= 0] == [r.id for r in engine.search(q, k=5).results]
        # photo + colour word: served as search serves it (photo-anchored); the exact systems say why not
        photo = next(p for p in engine.store.iter_products() if p.image_path).image_path
        queries = [("blue", photo), ("green", photo)]
        got = system.rank_positions(queries, "text+image", 5)
        for row, (text, image) in zip(got.tolist(), queries, strict=True):
            want = [r.id for r in engine.search(text, image=image, k=5).results]
            assert [ids[p] for p in row if p >= 0] == want
        exact = SignalSystem("hybrid", ["lexical", "text", "image"], ids=ids)
        assert "system 'served'" in exact.supports("text+image")
