"""Crash safety of the one write path: a failure injected at every step of a re-index, an upsert,
a delete and a compaction (plus a real ``kill -9`` of a subprocess) leaves an index that reopens to
exactly the state before or after the change, equal to a clean build of that catalog, and a
re-run of the interrupted command repairs everything."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from writer_helpers import state, write_catalogs

from prodsearch.catalog import read_catalog
from prodsearch.catalog.store import ProductStore
from prodsearch.index.backend import FaissBackend
from prodsearch.index.lexical import LexicalIndex
from prodsearch.search import builder, layout
from prodsearch.search.builder import build_index
from prodsearch.search.engine import Engine
from prodsearch.search.writer import IndexWriter

TESTS = Path(__file__).resolve().parents[1]


class Boom(RuntimeError):
    pass


def fail_on_call(monkeypatch, owner, name: str, nth: int = 1) -> None:
    """Make ``owner.name`` raise :class:`Boom` on its ``nth`` call (earlier calls run normally)."""
    original = getattr(owner, name)
    calls = {"n": 0}

    def wrapper(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == nth:
            raise Boom(f"injected failure in {name} (call {nth})")
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Catalogs v1/v1b/v2 and the state of a clean build of each."""
    from fakes import fake_embedder

    root = tmp_path_factory.mktemp("writer")
    cats = write_catalogs(root / "shop")
    clean = {}
    for name, path in cats.items():
        build_index(path, root / f"clean-{name}", embedder=fake_embedder())
        clean[name] = state(root / f"clean-{name}", fake_embedder())
    assert clean["v1"] != clean["v2"] and clean["v1"] != clean["v1b"]
    return cats, clean


def build(cats, name, out, embedder):
    return build_index(cats[name], out, embedder=embedder)


# every step of a re-index, and whether the new catalog is committed when it fails there
REINDEX_STEPS = [
    ("encode", builder, "encode_products", 1, "v1"),
    ("store commit", ProductStore, "commit", 1, "v1"),
    ("apply to memory", IndexWriter, "_apply", 1, "v2"),
    ("first vector save", FaissBackend, "save", 1, "v2"),
    ("second vector save", FaissBackend, "save", 2, "v2"),
    ("lexical save", LexicalIndex, "save", 1, "v2"),
    ("manifest save", layout.Manifest, "save", 1, "v2"),
    ("log trim", ProductStore, "trim_oplog", 1, "v2"),
]


@pytest.mark.parametrize("step, owner, name, nth, expect", REINDEX_STEPS, ids=[s[0] for s in REINDEX_STEPS])
def test_reindex_failure_at_every_step(
    world, tmp_path, monkeypatch, fake_embedder, step, owner, name, nth, expect
):
    cats, clean = world
    out = tmp_path / "index"
    build(cats, "v1", out, fake_embedder)
    fail_on_call(monkeypatch, owner, name, nth)
    with pytest.raises(Boom):
        build(cats, "v2", out, fake_embedder)
    monkeypatch.undo()
    assert state(out, fake_embedder) == clean[expect]
    report = build(cats, "v2", out, fake_embedder)  # the re-run repairs everything
    assert state(out, fake_embedder) == clean["v2"]
    with ProductStore(out / layout.STORE) as store:
        assert store.oplog_size() == 0  # everything saved and checkpointed
    if expect == "v2":
        assert not report.did_work  # the commit had happened: nothing to encode again


WRITE_STEPS = [
    ("store commit", ProductStore, "commit", 1, False),
    ("apply to memory", IndexWriter, "_apply", 1, True),
]


@pytest.mark.parametrize("step, owner, name, nth, committed", WRITE_STEPS, ids=[s[0] for s in WRITE_STEPS])
def test_upsert_and_delete_failures(
    world, tmp_path, monkeypatch, fake_embedder, step, owner, name, nth, committed
):
    cats, clean = world
    out = tmp_path / "index"
    build(cats, "v1", out, fake_embedder)
    v2 = {p.id: p for p in read_catalog(cats["v2"]).products}
    with Engine.open(out, embedder=fake_embedder) as engine:
        fail_on_call(monkeypatch, owner, name, nth)
        with pytest.raises(Boom):
            engine.delete(["p02"])
        monkeypatch.undo()
    assert state(out, fake_embedder) == clean["v1b" if committed else "v1"]
    with Engine.open(out, embedder=fake_embedder) as engine:
        if not committed:
            assert engine.delete(["p02"]) == 1
        fail_on_call(monkeypatch, owner, name, nth)
        with pytest.raises(Boom):
            engine.upsert([v2["p01"], v2["p13"], v2["p03"]])  # changed, new, unchanged
        monkeypatch.undo()
        if not committed:
            # nothing changed, in memory either: the engine still serves v1b and accepts the retry
            assert "p13" not in engine.store
            assert engine.upsert([v2["p01"], v2["p13"]]) == {"added": 1, "updated": 1, "unchanged": 0}
    assert state(out, fake_embedder) == clean["v2"]


def test_encoder_failure_writes_nothing(world, tmp_path, monkeypatch, fake_embedder):
    cats, clean = world
    out = tmp_path / "index"
    build(cats, "v1", out, fake_embedder)
    v2 = {p.id: p for p in read_catalog(cats["v2"]).products}
    with Engine.open(out, embedder=fake_embedder) as engine:
        fail_on_call(monkeypatch, builder, "encode_products")
        with pytest.raises(Boom):
            engine.upsert([v2["p13"]])
    assert state(out, fake_embedder) == clean["v1"]


COMPACT_STEPS = [
    ("first vector save", FaissBackend, "save", 1),
    ("second vector save", FaissBackend, "save", 2),
    ("lexical save", LexicalIndex, "save", 1),
    ("log trim", ProductStore, "trim_oplog", 1),
]


@pytest.mark.parametrize("step, owner, name, nth", COMPACT_STEPS, ids=[s[0] for s in COMPACT_STEPS])
def test_compaction_failure_at_every_step(
    world, tmp_path, monkeypatch, fake_embedder, step, owner, name, nth
):
    cats, clean = world
    out = tmp_path / "index"
    build(cats, "v1", out, fake_embedder)
    v2 = {p.id: p for p in read_catalog(cats["v2"]).products}
    with Engine.open(out, embedder=fake_embedder) as engine:
        engine.delete(["p02"])
        engine.upsert([v2["p01"], v2["p13"]])
        fail_on_call(monkeypatch, owner, name, nth)
        with pytest.raises(Boom):
            engine.compact()
        monkeypatch.undo()
        # the engine keeps serving the acknowledged state
        assert [r.id for r in engine.search("scarf", k=1, mode="lexical").results] == ["p13"]
    assert state(out, fake_embedder) == clean["v2"]
    with Engine.open(out, embedder=fake_embedder) as engine:
        engine.compact()
        assert engine.store.oplog_size() == 0
    assert state(out, fake_embedder) == clean["v2"]


def test_failed_save_temp_folders_are_removed_on_open(world, tmp_path, fake_embedder):
    cats, _ = world
    out = tmp_path / "index"
    build(cats, "v1", out, fake_embedder)
    stale = out / layout.VECTORS / ".text.gen-tmp-123-456"
    stale.mkdir()
    (stale / "text.vectors.npy").write_bytes(b"half a file")
    Engine.open(out, embedder=fake_embedder).close()
    assert not stale.exists()


CHILD = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from fakes import fake_embedder
from prodsearch.search import builder
from prodsearch.index.backend import FaissBackend

calls = {{"n": 0}}
def die(*args, **kwargs):
    calls["n"] += 1
    if calls["n"] == {nth}:
        os.kill(os.getpid(), signal.SIGKILL)
    return original(*args, **kwargs)

original = getattr({owner}, {name!r})
setattr({owner}, {name!r}, die)
builder.build_index({catalog!r}, {out!r}, embedder=fake_embedder())
"""


@pytest.mark.parametrize(
    "owner, name, nth, expect",
    [("builder", "encode_products", 1, "v1"), ("FaissBackend", "save", 2, "v2")],
    ids=["during encoding", "between the two vector saves"],
)
def test_kill_9_during_reindex(world, tmp_path, fake_embedder, owner, name, nth, expect):
    cats, clean = world
    out = tmp_path / "index"
    build(cats, "v1", out, fake_embedder)
    code = textwrap.dedent(
        CHILD.format(tests=str(TESTS), owner=owner, name=name, nth=nth, catalog=str(cats["v2"]), out=str(out))
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert state(out, fake_embedder) == clean[expect]
    build(cats, "v2", out, fake_embedder)
    assert state(out, fake_embedder) == clean["v2"]
    assert not [p for p in (out / layout.VECTORS).iterdir() if "tmp" in p.name]
    assert os.path.exists(out / layout.MANIFEST)


def test_compact_command_checkpoints_pending_writes(world, tmp_path, fake_embedder, capsys):
    from prodsearch.cli import main

    cats, clean = world
    out = tmp_path / "index"
    build(cats, "v1", out, fake_embedder)
    with Engine.open(out, embedder=fake_embedder) as engine:
        engine.delete(["p02"])
        assert engine.store.oplog_size() == 1 and engine._writer.pending > 0
    with pytest.raises(SystemExit) as exc:
        main(["compact", str(out)])
    assert exc.value.code in (0, None)
    assert "compacted" in capsys.readouterr().out
    with ProductStore(out / layout.STORE) as store:
        assert store.oplog_size() == 0
    assert state(out, fake_embedder) == clean["v1b"]
