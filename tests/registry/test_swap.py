"""The switch between model versions: under concurrent search load through a real HTTP server no
request fails and each answer comes whole from one version; rollback restores the previous vectors
without encoding; a refresh interrupted at any step leaves the served model as it was, and a switch
that dies midway is finished by the next open (issue 12)."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import numpy as np
import pytest

from prodsearch.errors import ConfigError
from prodsearch.registry import Registry
from prodsearch.registry.refresh import ensure_registered, refresh
from prodsearch.registry.swap import switch_to
from prodsearch.search.engine import Engine

TOKEN = "admin-token-0123456789"
QUERIES = [
    {"text": "red shirt", "mode": "image", "k": 8},  # the trained space alone: differs between models
    {"text": "blue bag", "k": 8},
    {"text": "yellow dress women", "mode": "image", "k": 8},
]


def _joint(engine: Engine) -> tuple[np.ndarray, np.ndarray]:
    be = engine.vectors["joint"]
    iids = np.sort(np.asarray(be.iids))
    return iids, be.get(iids)


@pytest.fixture
def counted(monkeypatch):
    """Counts every call into an encoder: the toy base encoders and the trained heads."""
    from fakes import FakeImageEncoder, FakeTextEncoder
    from prodsearch.training.embedder import _TrainedEncoder

    calls = {"n": 0}
    for cls, name in (
        (FakeTextEncoder, "encode"),
        (FakeImageEncoder, "encode"),
        (_TrainedEncoder, "_project"),
    ):
        orig = getattr(cls, name)

        def wrapped(self, *a, _orig=orig, **kw):
            calls["n"] += 1
            return _orig(self, *a, **kw)

        monkeypatch.setattr(cls, name, wrapped)
    return calls


def test_rollback_restores_previous_vectors_without_encoding(make_index, counted):
    idx = make_index("bad")
    with Engine.open(idx) as engine:
        ensure_registered(engine)
        v1_iids, v1_vecs = _joint(engine)
        v1_ids = [r.id for r in engine.search(**QUERIES[0]).results]
    report = refresh(idx, steps=("train", "evaluate", "promote"))
    assert report["promote"]["promoted"]
    with Engine.open(idx) as engine:
        assert engine.model_version == "v2"
        assert not np.array_equal(_joint(engine)[1], v1_vecs)
        counted["n"] = 0
        sw = switch_to(engine, "v1", action="rollback")
        assert counted["n"] == 0 and sw["encoded"] == 0 and sw["switched"]
        iids, vecs = _joint(engine)
        assert np.array_equal(iids, v1_iids) and np.array_equal(vecs, v1_vecs)
        assert engine.model_version == "v1"
        assert [r.id for r in engine.search(**QUERIES[0]).results] == v1_ids
    reg = Registry(idx)
    assert reg.served == "v1" and reg.get("v2").status == "rolled-back"
    with Engine.open(idx) as engine:  # and so it stays on disk
        assert engine.model_version == "v1" and np.array_equal(_joint(engine)[1], v1_vecs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_swap_under_concurrent_search_load(make_index):
    """Four clients search without pause through uvicorn while the service is told to serve v2 and
    then to roll back to v1: no request fails, every answer is tagged with one version and equals
    that version's own answer to the query (never a mix of one model's query and the other's vectors)."""
    import uvicorn

    from prodsearch.service.app import create_app
    from prodsearch.service.settings import Settings

    idx = make_index("bad")
    refresh(idx, steps=("train", "evaluate"))  # v2: a better candidate, not served yet
    engine = Engine.open(idx, lazy_model=False)
    ensure_registered(engine)
    app = create_app(engine, Settings(_env_file=None, api_token=TOKEN, request_timeout_s=30.0))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        while not server.started:
            time.sleep(0.02)
        with httpx.Client(base_url=base, timeout=30) as c:

            def answers() -> list[list[str]]:
                out = []
                for q in QUERIES:
                    r = c.post("/search", json=q)
                    assert r.status_code == 200, r.text
                    out.append((r.json()["model"], [x["id"] for x in r.json()["results"]]))
                return out

            before = answers()
            assert {m for m, _ in before} == {"v1"}
            assert c.post("/admin/reload", json={"version": "v2"}).status_code == 401
            log: list[tuple[int, float, int, str | None, list[str]]] = []
            stop = threading.Event()

            def client(n: int) -> None:
                with httpx.Client(base_url=base, timeout=30) as cc:
                    i = n
                    while not stop.is_set():
                        t = time.perf_counter()
                        r = cc.post("/search", json=QUERIES[i % len(QUERIES)])
                        body = r.json()
                        log.append(
                            (
                                n,
                                t,
                                r.status_code,
                                body.get("model"),
                                [x["id"] for x in body.get("results", [])],
                            )
                        )
                        i += 1

            workers = [threading.Thread(target=client, args=(n,)) for n in range(4)]
            for w in workers:
                w.start()
            time.sleep(0.5)
            r = c.post("/admin/reload", json={"version": "v2"}, headers=auth)
            assert r.status_code == 200, r.text
            switched_at = time.perf_counter()
            assert r.json()["served"] == "v2" and r.json()["previous"] == "v1" and r.json()["encoded"] == 0
            time.sleep(0.5)
            stop.set()
            for w in workers:
                w.join()
            after = answers()
            assert {m for m, _ in after} == {"v2"}
            ref = {"v1": [ids for _, ids in before], "v2": [ids for _, ids in after]}
            assert ref["v1"][0] != ref["v2"][0]  # the two models do answer differently

            assert all(status == 200 for _, _, status, _, _ in log), [x for x in log if x[2] != 200][:3]
            seen = {"v1": 0, "v2": 0}
            last: dict[int, str] = {}
            per_client: dict[int, int] = {}
            for n, t, _, model, ids in log:
                k = per_client.get(n, n)
                per_client[n] = k + 1
                assert model in ("v1", "v2")
                assert ids == ref[model][k % len(QUERIES)], (model, k % len(QUERIES))
                assert not (last.get(n) == "v2" and model == "v1")  # never back to the old model
                if t > switched_at:
                    assert model == "v2"
                last[n] = model
                seen[model] += 1
            assert seen["v1"] > 0 and seen["v2"] > 0, seen

            r = c.post("/admin/reload", json={"version": "v1"}, headers=auth)  # rollback, no encoding
            assert r.status_code == 200 and r.json()["served"] == "v1" and r.json()["encoded"] == 0
            assert answers() == before
            model = c.get("/admin/model", headers=auth).json()
            assert model["served"] == "v1" and model["registry_served"] == "v1"
            bad = c.post("/admin/reload", json={"version": "v9"}, headers=auth)
            assert bad.status_code == 400 and "v9" in bad.json()["error"]["message"]
    finally:
        server.should_exit = True
        thread.join(10)
        engine.close()


def _served_files(idx) -> dict[str, bytes]:
    return {
        p: (idx / p).read_bytes() for p in ("manifest.json", "vectors/joint.json", "models/registry.json")
    }


@pytest.mark.parametrize("step", ["train", "evaluate"])
def test_interrupted_refresh_leaves_the_served_model_untouched(make_index, monkeypatch, step):
    idx = make_index("bad")
    with Engine.open(idx) as engine:
        ensure_registered(engine)
        ids = [r.id for r in engine.search(**QUERIES[0]).results]
    before = _served_files(idx)

    def boom(*a, **kw):
        raise RuntimeError(f"injected failure in {step}")

    if step == "train":
        monkeypatch.setattr("prodsearch.training.loop.Trainer.fit", boom)
    else:
        monkeypatch.setattr("prodsearch.registry.evaluate.fit_fusion", boom)
    with pytest.raises(RuntimeError, match="injected"):
        refresh(idx, steps=("train", "evaluate", "promote"))
    assert _served_files(idx) == before
    reg = Registry(idx)
    assert reg.served == "v1" and not list(reg.root.glob(".train-*"))
    assert [v.version for v in reg.versions()] == (["v1"] if step == "train" else ["v1", "v2"])
    if step == "evaluate":  # the candidate stays, unevaluated, and cannot be promoted as it is
        with pytest.raises(ConfigError, match="has not been evaluated"):
            refresh(idx, steps=("promote",))
    with Engine.open(idx) as engine:
        assert engine.model_version == "v1"
        assert [r.id for r in engine.search(**QUERIES[0]).results] == ids


def test_switch_that_dies_midway_is_finished_on_open(make_index, monkeypatch):
    """The switch dies after writing the new vectors, before the manifest: the running engine still
    answers with v1 whole; the next open finishes the switch (vectors and manifest agree on v2)."""
    from prodsearch.search import layout

    idx = make_index("bad")
    refresh(idx, steps=("train", "evaluate"))
    engine = Engine.open(idx)
    try:
        ensure_registered(engine)
        v1_ids = [r.id for r in engine.search(**QUERIES[0]).results]

        def boom(self, root):
            raise OSError("injected: disk full")

        with monkeypatch.context() as m:
            m.setattr(layout.Manifest, "save", boom)
            with pytest.raises(OSError, match="injected"):
                refresh(idx, steps=("promote",))
            resp = engine.search(**QUERIES[0])  # this process's engine: untouched
            assert resp.model == "v1" and [r.id for r in resp.results] == v1_ids
            assert (idx / "models" / "switch.json").is_file()
    finally:
        engine.close()
    with Engine.open(idx) as engine:
        assert engine.model_version == "v2" and not (idx / "models" / "switch.json").exists()
        snap = json.loads((idx / "models/v2/vectors/joint.json").read_text())
        assert len(engine.vectors["joint"]) == snap["count"]
        assert Registry(idx).served == "v2"
        resp = engine.search(**QUERIES[0])
        assert (
            resp.model == "v2"
            and [engine.get(r.id).attributes["colour"] for r in resp.results][:3] == ["red"] * 3
        )


def test_a_write_racing_the_switch_gets_the_new_models_vectors(make_index, monkeypatch):
    """A product written while the switch runs (its encoding slowed down so that the switch starts
    meanwhile) ends with the new model's joint vector, not the old one's."""
    import dataclasses

    from fakes import FakeTextEncoder

    idx = make_index("bad")
    refresh(idx, steps=("train", "evaluate"))
    started = threading.Event()
    orig = FakeTextEncoder.encode

    def slow(self, items, **kw):
        if any("racing product" in str(x) for x in items):
            started.set()
            time.sleep(0.5)
        return orig(self, items, **kw)

    monkeypatch.setattr(FakeTextEncoder, "encode", slow)
    with Engine.open(idx) as engine:
        ensure_registered(engine)
        old_joint = engine.embedder
        new = dataclasses.replace(engine.get("p0000"), id="new1", title="racing product")
        writer = threading.Thread(target=engine.upsert, args=([new],))
        writer.start()
        assert started.wait(10)
        switch_to(engine, "v2")
        writer.join()
        iid = engine.store.iid_of(["new1"])[0]
        base = engine.vectors["image"].get(np.asarray([iid]))
        got = engine.vectors["joint"].get(np.asarray([iid]))[0]
        assert np.allclose(got, engine.embedder.joint_from_base("image", base)[0], atol=1e-6)
        assert not np.allclose(got, old_joint.joint_from_base("image", base)[0], atol=1e-3)
