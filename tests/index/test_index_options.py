"""``--index-option``: the embedded vector index's parameters, set by the user, kept in the manifest.
Search-time ones (``nprobe``, ``ef_search``, ``rerank``...) change a built index in place, also in
later processes; build-time ones (``hnsw_m``, ``pq_m``...) rebuild its vectors' index; bad ones are
refused before anything is written."""

from __future__ import annotations

import json
from functools import partial

import numpy as np
import pytest

from cli_helpers import run_cli
from prodsearch.errors import ConfigError
from prodsearch.index.backend import FaissBackend
from prodsearch.index.vector import VectorIndex, exact_search


@pytest.fixture
def build(tmp_path, tiny_catalog, fake_embedder, tiny_mapping):
    from prodsearch.search.builder import build_index
    from prodsearch.search.recipe import EmbedderRecipe

    kw = {
        "mapping": tiny_mapping,
        "recipe": EmbedderRecipe(text_encoder="fake-text", image_encoder="fake-image"),
        "embedder": fake_embedder,
    }
    return partial(build_index, tiny_catalog, tmp_path / "idx", **kw)


def _params(root, embedder) -> list[dict]:
    from prodsearch.search.engine import Engine

    with Engine.open(root, embedder=embedder) as engine:
        assert engine.search("waterproof jacket", k=3).results[0].id == "p10"
        return [be.params() | {"ann": be.ann_kind} for be in engine.vectors.values()]


def test_query_options_apply_in_place_build_options_rebuild(build, tmp_path, fake_embedder, monkeypatch):
    root = tmp_path / "idx"
    build(index_kind="hnsw", index_options={"hnsw_threshold": 1, "ef_search": 16})
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["settings"]["index_params"] == {"hnsw_threshold": 1, "ef_search": 16}
    got = _params(root, fake_embedder)
    assert {(p["ann"], p["ef_search"], p["hnsw_threshold"]) for p in got} == {("hnsw", 16, 1)}

    rebuilt = []
    real = FaissBackend.reindexed
    monkeypatch.setattr(FaissBackend, "reindexed", lambda self, **kw: rebuilt.append(kw) or real(self, **kw))
    build(index_options={"ef_search": 64})  # search-time: no rebuild, kept with the earlier options
    assert rebuilt == []
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["settings"]["index_params"] == {"hnsw_threshold": 1, "ef_search": 64}
    assert {p["ef_search"] for p in _params(root, fake_embedder)} == {64}  # a new process sees it

    build(index_options={"hnsw_m": 8})  # build-time: every vector kind's index is rebuilt
    assert len(rebuilt) == len(got) and all(kw["hnsw_m"] == 8 and kw["ef_search"] == 64 for kw in rebuilt)
    got = _params(root, fake_embedder)
    assert {(p["ann"], p["hnsw_m"], p["ef_search"]) for p in got} == {("hnsw", 8, 64)}
    rebuilt.clear()
    build()  # nothing given: the index keeps its settings and is not rebuilt
    assert rebuilt == [] and {p["hnsw_m"] for p in _params(root, fake_embedder)} == {8}


@pytest.mark.parametrize(
    "options, message",
    [
        ({"ef_serch": 64}, "--index-option ef_serch: unknown; expected one of"),
        ({"nprobe": 0}, "nprobe must be >= 1"),
        ({"pq_m": 7}, "pq_m .* must divide dim"),
    ],
)
def test_bad_options_are_refused_before_anything_is_written(build, tmp_path, options, message):
    root = tmp_path / "idx"
    build(index_kind="ivfpq")
    before = (root / "manifest.json").read_bytes()
    with pytest.raises(ConfigError, match=message):
        build(index_options=options)
    assert (root / "manifest.json").read_bytes() == before


def test_milvus_backend_refuses_embedded_options(build, tmp_path):
    with pytest.raises(ConfigError, match="--milvus-option"):
        build(backend=str(tmp_path / "m.db"), index_options={"nprobe": 8})


def test_set_query_params_equals_an_index_built_with_them():
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((3_000, 16)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    queries = vecs[:40] + 0.3 * rng.standard_normal((40, 16)).astype(np.float32)
    kw = {"kind": "ivfpq", "hnsw_threshold": 1_000, "pq_m": 4, "nlist": 64}
    tuned = VectorIndex(16, **kw, nprobe=1, rerank=10)
    tuned.add(np.arange(3_000), vecs)
    tuned.sync()
    narrow = [h.iids.tolist() for h in tuned.search(queries, 10)]
    tuned.set_query_params(nprobe=64, rerank=3_000)  # every list, every candidate: exact
    wide = [h.iids.tolist() for h in tuned.search(queries, 10)]
    truth = [h.iids.tolist() for h in exact_search(vecs, np.arange(3_000), queries, 10)]
    assert wide == truth and narrow != truth
    with pytest.raises(ConfigError, match="not search-time parameters"):
        tuned.set_query_params(pq_m=8)
    with pytest.raises(ConfigError, match="rerank must be >= 1"):
        tuned.set_query_params(rerank=0)
    assert tuned.params()["rerank"] == 3_000  # a refused change leaves it as it was


def test_cli_index_option(tmp_path, tiny_catalog, capsys):
    out = tmp_path / "idx"
    fake = ["--text-encoder", "fake-text", "--image-encoder", "fake-image"]
    run = partial(run_cli, capsys)
    code, stdout, err = run(
        "index", str(tiny_catalog), "--out", str(out), "--index-kind", "ivfpq", *fake,
        "--index-option", "nprobe=8", "--index-option", "rerank=50",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads((out / "vectors" / "text.json").read_text())["params"]["nprobe"] == 8
    for bad, message in (("nprobe=many", "the value must be a number"), ("nprobe", "expected KEY=VALUE")):
        code, _, err = run("index", str(tiny_catalog), "--out", str(out), *fake, "--index-option", bad)
        assert code == 2 and message in err and "Traceback" not in err
