"""Milvus backend against the embedded one, on Milvus Lite started here (one database per module).

Congruence in the manner of qdrant-client's local/remote tests: the same vectors and attributes in
both backends, a hundred random filters; the set each filter selects inside Milvus must equal the
embedded evaluator's, and the top-10 must be the same (exact index) or overlap >= .95 (HNSW).
A failing filter is printed as JSON.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

pytest.importorskip("pymilvus", reason="pymilvus is not installed (pip install 'prodsearch[distributed]')")
pytest.importorskip(
    "milvus_lite", reason="milvus-lite is not installed (pip install 'prodsearch[distributed]')"
)

from prodsearch.errors import ClusterConnectionError, ConfigError, EncoderMismatchError  # noqa: E402
from prodsearch.index.backend import FaissBackend  # noqa: E402
from prodsearch.index.filters import evaluate, parse_filter  # noqa: E402
from prodsearch.index.milvus import MilvusBackend, connect  # noqa: E402
from prodsearch.index.milvus_filter import to_expression  # noqa: E402

N, DIM = 400, 16
FIELDS = ["colour", "size", "style", "year"]
COLOURS = ["Red", "red ", "Crème", "creme", "Navy Blue", "Blue", "Light Grey", "Grey", ""]
SIZES = ["38", "40", "40.0", "42", "XL", "M", "", "7.5"]
STYLES = ["casual summer", "Summer Party", "formal", "party casual wear", "", "sport"]
EMB = {"name": "test-embedder", "hash": "0123456789abcdef"}


def _attributes(rng: random.Random) -> list[dict[str, str]]:
    out = []
    for _ in range(N):
        a = {
            "colour": rng.choice(COLOURS),
            "size": rng.choice(SIZES),
            "style": rng.choice(STYLES),
            "year": str(rng.randint(2008, 2018)),
        }
        out.append({k: v for k, v in a.items() if v != "" or rng.random() < 0.5})  # absent or ""
    return out


def random_filter(rng: random.Random, depth: int = 0) -> dict:
    """A random filter in the JSON form, mixing every operator and value type."""
    if depth < 2 and rng.random() < 0.4:
        op = rng.choice(["and", "or", "not"])
        if op == "not":
            return {"not": random_filter(rng, depth + 1)}
        return {op: [random_filter(rng, depth + 1) for _ in range(rng.randint(0, 3))]}
    field = rng.choice(FIELDS)
    kind = rng.choice(["eq", "in", "range", "match"])
    pool = {"colour": COLOURS, "size": SIZES, "style": STYLES, "year": ["2010", "2015"]}[field]
    values = [v for v in pool if v.strip()] + [40, 2012, 7.5, "BLUE", "crème", "nothing"]
    if kind == "eq":
        return {"field": field, "eq": rng.choice(values)}
    if kind == "in":
        return {"field": field, "in": rng.sample(values, rng.randint(0, 3))}
    if kind == "match":
        return {"field": field, "match": rng.choice(["summer", "party casual", "grey", "blue navy", "x"])}
    bounds = rng.sample(["gt", "gte", "lt", "lte"], rng.randint(1, 2))
    return {"field": field, "range": {b: rng.choice([40, 2012, "M", "39.5", 7.5, "blue"]) for b in bounds}}


@pytest.fixture(scope="module")
def milvus_client(tmp_path_factory):
    client = connect(str(tmp_path_factory.mktemp("milvus") / "test.db"))
    yield client
    client.close()


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    vecs = rng.normal(size=(N, DIM)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    attrs = _attributes(random.Random(7))
    table = {f: np.array([a.get(f, "") for a in attrs], dtype=object) for f in FIELDS}
    return np.arange(N, dtype=np.int64) * 3 + 5, vecs, attrs, table


def _milvus(client, data, name: str, index_type: str, **extra) -> MilvusBackend:
    iids, vecs, attrs, _ = data
    be = MilvusBackend(
        DIM,
        vector_kind="text",
        milvus={
            "uri": "lite",
            "collection": name,
            "index_type": index_type,
            "attribute_fields": FIELDS,
            **extra,
        },
        embedder=EMB,
        client=client,
    )
    if len(be) == 0:
        be.upsert(iids, vecs, attributes=attrs)
    return be


@pytest.fixture(scope="module")
def backends(milvus_client, data):
    iids, vecs, _, _ = data
    flat = FaissBackend(DIM, kind="flat")
    flat.upsert(iids, vecs)
    return flat, _milvus(milvus_client, data, "flat", "FLAT")


def test_hundred_random_filters_select_the_same_products_and_top10(milvus_client, backends, data):
    iids, vecs, _, table = data
    flat, mil = backends
    rng = random.Random(11)
    queries = np.random.default_rng(3).normal(size=(100, DIM)).astype(np.float32)
    nonempty = 0
    for n in range(100):
        raw = random_filter(rng)
        flt = parse_filter(raw)
        where = json.dumps(raw, ensure_ascii=False)
        mask = evaluate(flt, table)
        expr = to_expression(flt, mil.fields)
        got = {
            r["id"] for r in milvus_client.query(mil.collection, filter=expr, output_fields=["id"], limit=N)
        }
        assert got == set(iids[mask].tolist()), f"filter {where} -> Milvus {expr!r} selects other products"
        want = flat.search(queries[n], 10, allowed=iids[mask])[0]
        have = mil.search(queries[n], 10, filter=flt)[0]
        assert have.iids.tolist() == want.iids.tolist(), f"top-10 differ for filter {where}"
        np.testing.assert_allclose(have.scores, want.scores, atol=1e-5, err_msg=where)
        nonempty += bool(mask.any())
    assert nonempty > 50  # the filters are not trivially empty


def test_hnsw_recall_against_the_exact_embedded_index(milvus_client, backends, data):
    iids, _, _, table = data
    flat, _ = backends
    hnsw = _milvus(milvus_client, data, "hnsw", "HNSW", index_params={"M": 16, "efConstruction": 100})
    queries = np.random.default_rng(5).normal(size=(50, DIM)).astype(np.float32)
    for raw in (None, {"not": {"field": "colour", "eq": "red"}}, {"field": "year", "range": {"gte": 2012}}):
        flt = parse_filter(raw) if raw else None
        allowed = iids[evaluate(flt, table)] if flt else None
        want = flat.search(queries, 10, allowed=allowed)
        have = hnsw.search(queries, 10, filter=flt)
        recall = np.mean([len(set(a.iids) & set(b.iids)) / 10 for a, b in zip(want, have, strict=True)])
        assert recall >= 0.95, f"recall@10 {recall:.3f} for filter {raw}"


def test_upsert_delete_get_and_membership(milvus_client, data):
    iids, vecs, attrs, _ = data
    be = _milvus(milvus_client, data, "writes", "FLAT")
    assert len(be) == N and int(iids[0]) in be and 4 not in be
    np.testing.assert_allclose(be.get(iids[:3]), vecs[:3], atol=1e-6)
    moved = vecs[1:2] * -1
    be.upsert(iids[:1], moved, attributes=[{"colour": "Purple"}])  # replaces vector and attributes
    np.testing.assert_allclose(be.get(iids[:1]), moved, atol=1e-6)
    hits = be.search(moved[0], 3, filter=parse_filter({"colour": "purple"}))[0]
    assert hits.iids.tolist() == [int(iids[0])]
    assert be.delete([int(iids[0]), int(iids[1]), 999_999]) == 2 and len(be) == N - 2
    assert int(iids[0]) not in be.search(moved[0], 5)[0].iids
    assert sorted(be.iids.tolist()) == sorted(iids[2:].tolist())


def test_a_collection_of_another_encoder_is_refused(milvus_client, data):
    _milvus(milvus_client, data, "owned", "FLAT")
    with pytest.raises(
        EncoderMismatchError, match=r"'owned_text' at lite holds text vectors of encoder 'test-embedder'"
    ):
        MilvusBackend(
            DIM,
            vector_kind="text",
            milvus={"uri": "lite", "collection": "owned", "attribute_fields": FIELDS},
            embedder={"name": "other", "hash": "ffffffffffffffff"},
            client=milvus_client,
        )


def test_unreachable_milvus_is_one_clear_error():
    with pytest.raises(ClusterConnectionError, match=r"Milvus at http://127.0.0.1:9 could not be reached"):
        connect("http://127.0.0.1:9", timeout_s=2)


def test_bad_config_is_refused():
    with pytest.raises(ConfigError, match="consistency_level 'Sometimes'"):
        MilvusBackend(
            DIM,
            vector_kind="text",
            milvus={"uri": "x", "collection": "c", "consistency_level": "Sometimes"},
            embedder=EMB,
        )
    with pytest.raises(ConfigError, match="collection name 'bad-name'"):
        MilvusBackend(DIM, vector_kind="text", milvus={"uri": "x", "collection": "bad-name"}, embedder=EMB)
