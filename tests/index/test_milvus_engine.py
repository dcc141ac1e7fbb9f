"""The whole engine on a Milvus Lite backed index against the embedded one: same catalog, same text,
photo and hybrid queries with random filters, same results; writes, reopen, the CLI, and bad input
(unreachable Milvus, a collection of another encoder) with nothing half-written.
"""

from __future__ import annotations

import json
import random

import pytest

pytest.importorskip("pymilvus", reason="pymilvus is not installed (pip install 'prodsearch[distributed]')")
pytest.importorskip(
    "milvus_lite", reason="milvus-lite is not installed (pip install 'prodsearch[distributed]')"
)

from fakes import TINY_PRODUCTS, FakeImageEncoder, FakeTextEncoder, fake_embedder, write_tiny_catalog  # noqa: E402
from prodsearch.catalog.schema import ColumnMapping, Product  # noqa: E402
from prodsearch.encoders.base import Embedder  # noqa: E402
from prodsearch.errors import ClusterConnectionError, EncoderMismatchError, ProdsearchError  # noqa: E402
from prodsearch.index.milvus import connect  # noqa: E402
from prodsearch.search import layout  # noqa: E402
from prodsearch.search.builder import build_index  # noqa: E402
from prodsearch.search.engine import Engine  # noqa: E402

MAPPING = ColumnMapping(
    id="id",
    title="title",
    text=["description"],
    attributes=["colour", "category", "gender", "price"],
    image="image",
)
QUERIES = ["red shirt", "black leather", "summer dress", "blue", "waterproof jacket for men"]


def _filters(n: int, seed: int = 5) -> list[dict | None]:
    rng = random.Random(seed)
    colours = sorted({p[3] for p in TINY_PRODUCTS})
    out: list[dict | None] = [None]
    for _ in range(n):
        parts = rng.sample(
            [
                {"field": "colour", "in": rng.sample(colours, rng.randint(1, 3))},
                {"field": "gender", "eq": rng.choice(["men", "Women", "unisex"])},
                {"field": "price", "range": {rng.choice(["gte", "lt"]): rng.choice([20, 40, 60.5])}},
                {"not": {"field": "category", "eq": rng.choice(["shirt", "shoe", "bag"])}},
            ],
            rng.randint(1, 2),
        )
        out.append({"and": parts} if rng.random() < 0.7 else {"or": parts})
    return out


@pytest.fixture(scope="module")
def two_indexes(tmp_path_factory):
    root = tmp_path_factory.mktemp("milvus-engine")
    catalog = write_tiny_catalog(root / "shop")
    build_index(catalog, root / "embedded", mapping=MAPPING, embedder=fake_embedder())
    db = root / "milvus.db"
    build_index(
        catalog,
        root / "milvus",
        mapping=MAPPING,
        embedder=fake_embedder(),
        backend=str(db),
        index_kind="flat",
    )
    return catalog, root / "embedded", root / "milvus", db


def _ranked(engine: Engine, **kw) -> list[tuple[str, float]] | str:
    """The ranked (id, score) list, or the error the query raised (must be the same on both)."""
    try:
        return [(h.id, round(h.score, 5)) for h in engine.search(k=20, **kw).results]
    except ProdsearchError as err:
        return f"{type(err).__name__}: {err}"


def test_same_results_for_text_photo_and_hybrid_queries_with_random_filters(two_indexes):
    catalog, emb_dir, mil_dir, _ = two_indexes
    photos = [catalog.parent / "images" / f"{p}.jpg" for p in ("p01", "p07")]
    with (
        Engine.open(emb_dir, embedder=fake_embedder()) as a,
        Engine.open(mil_dir, embedder=fake_embedder()) as b,
    ):
        assert b.manifest.backend == "milvus" and a.info()["vectors"] == b.info()["vectors"]
        for flt in _filters(20):
            where = json.dumps(flt)
            for q in QUERIES:
                for mode in ("text", "image", "hybrid"):
                    assert _ranked(a, text=q, mode=mode, filters=flt) == _ranked(
                        b, text=q, mode=mode, filters=flt
                    ), f"{mode} {q!r} filter {where}"
            for photo in photos:
                assert _ranked(a, image=photo, filters=flt) == _ranked(b, image=photo, filters=flt), where
                assert _ranked(a, text="red", image=photo, filters=flt) == _ranked(
                    b, text="red", image=photo, filters=flt
                ), where
        assert [h.id for h in a.similar("p01", k=5).results] == [h.id for h in b.similar("p01", k=5).results]


def test_writes_go_to_milvus_and_survive_reopening(two_indexes, tmp_path):
    catalog, _, _, db = two_indexes
    work = tmp_path / "writes"  # its own collections in the module's Milvus Lite database
    build_index(catalog, work, mapping=MAPPING, embedder=fake_embedder(), backend=str(db))
    photo = str(catalog.parent / "images" / "p06.jpg")
    new = Product(
        id="p99",
        title="Purple velvet shirt",
        attributes={"colour": "purple", "category": "shirt", "gender": "men"},
    )
    with Engine.open(work, embedder=fake_embedder()) as eng:
        assert eng.upsert([new])["added"] == 1
        assert (
            eng.search("purple velvet", k=1, mode="text", filters={"colour": "Purple"}).results[0].id == "p99"
        )
        assert eng.delete(["p01"]) == 1
    client = connect(str(db))
    text_coll = json.loads((work / layout.VECTORS / "text.json").read_text())["collection"]
    ids = {r["id"] for r in client.query(text_coll, filter="", output_fields=["id"], limit=100)}
    assert len(ids) == 12  # 12 - p01 + p99, in Milvus itself
    with Engine.open(work, embedder=fake_embedder()) as eng:
        got = [h.id for h in eng.search("shirt", k=20, mode="text").results]
        assert "p99" in got and "p01" not in got
        assert eng.search(image=photo, k=1).results[0].id == "p06"


def test_cli_index_and_search_on_milvus_lite(tmp_path, tiny_catalog, capsys):
    from prodsearch.cli import main

    out, db = tmp_path / "idx", tmp_path / "m.db"
    fake = ["--text-encoder", "fake-text", "--image-encoder", "fake-image"]
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "index",
                str(tiny_catalog),
                "--out",
                str(out),
                *fake,
                "--backend",
                str(db),
                "--milvus-option",
                "index_type=FLAT",
            ]
        )
    assert exc.value.code == 0
    manifest = layout.Manifest.load(out)
    assert (
        manifest.backend == "milvus" and manifest.settings["backend_params"]["milvus"]["index_type"] == "FLAT"
    )
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(
            ["search", str(out), "waterproof jacket", "-k", "1", "--json", "--filter", '{"gender": "unisex"}']
        )
    assert exc.value.code == 0
    assert json.loads(capsys.readouterr().out)["results"][0]["id"] == "p10"


def test_unreachable_milvus_fails_before_writing_anything(tmp_path, tiny_catalog, capsys):
    from prodsearch.cli import main

    out = tmp_path / "idx"
    with pytest.raises(SystemExit) as exc:
        main(["index", str(tiny_catalog), "--out", str(out), "--backend", "milvus://127.0.0.1:9"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Milvus at http://127.0.0.1:9 could not be reached" in err and "expected a Milvus server" in err
    assert not out.exists()


def test_collection_of_another_encoder_is_refused_and_nothing_written(two_indexes, tmp_path):
    catalog, _, mil_dir, db = two_indexes
    collection = json.loads((mil_dir / layout.VECTORS / "text.json").read_text())["milvus"]["collection"]
    other = Embedder(FakeTextEncoder(), FakeImageEncoder(), aligned=False, name="other")
    out = tmp_path / "other"
    with pytest.raises(
        EncoderMismatchError, match=r"holds text vectors of encoder 'fake'.*expects text vectors of 'other'"
    ):
        build_index(
            catalog,
            out,
            mapping=MAPPING,
            embedder=other,
            backend=str(db),
            backend_options={"collection": collection},
        )
    assert not out.exists()
    client = connect(str(db))
    assert client.query(f"{collection}_text", filter="", output_fields=["count(*)"])[0]["count(*)"] == 12


def test_an_index_keeps_its_backend(two_indexes):
    catalog, emb_dir, _, db = two_indexes
    from prodsearch.errors import ConfigError

    with pytest.raises(ConfigError, match="keeps its vectors in faiss"):
        build_index(catalog, emb_dir, mapping=MAPPING, embedder=fake_embedder(), backend=str(db))
    with pytest.raises(ClusterConnectionError):
        build_index(
            catalog, emb_dir, mapping=MAPPING, embedder=fake_embedder(), backend="milvus://127.0.0.1:9"
        )
    with Engine.open(emb_dir, embedder=fake_embedder()) as eng:
        assert eng.manifest.backend == "faiss" and len(eng) == 12


def test_http_service_serves_a_milvus_index_unchanged(two_indexes):
    from fastapi.testclient import TestClient

    from prodsearch.service.app import create_app

    _, emb_dir, mil_dir, _ = two_indexes
    body = {"text": "red shoes", "k": 5, "filters": {"gender": "women"}}
    got = {}
    for name, folder in (("embedded", emb_dir), ("milvus", mil_dir)):
        with TestClient(create_app(folder, embedder=fake_embedder())) as client:
            r = client.post("/search", json=body)
            assert r.status_code == 200, r.text
            got[name] = [(x["id"], round(x["score"], 5)) for x in r.json()["results"]]
            assert client.get("/healthz").status_code == 200
    assert got["milvus"] == got["embedded"] and got["milvus"][0][0] == "p06"


@pytest.mark.slow  # two evaluation runs
def test_evaluate_scores_a_milvus_index_as_the_embedded_one(two_indexes, tmp_path):
    from prodsearch.evaluation.runner import run_evaluation

    _, emb_dir, mil_dir, _ = two_indexes
    runs = {
        name: run_evaluation(
            folder, tmp_path / name, embedder=fake_embedder(), progress=False, max_queries=50
        )
        for name, folder in (("embedded", emb_dir), ("milvus", mil_dir))
    }
    assert {"dense-text", "image", "hybrid"} <= set(runs["milvus"]["systems"])
    assert runs["milvus"]["systems"] == runs["embedded"]["systems"]
