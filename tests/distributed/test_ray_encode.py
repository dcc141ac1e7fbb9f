"""Ray Data encoding on a local Ray started here (one per module: start-up costs ~10 s).

The single-process path (:func:`encode_products`) is the reference: the Ray path must return
the same vectors bit for bit, also after an actor is killed mid-job; its batches are committed
to the index one by one, and a job, or a driver, that dies must not redo the batches it already
committed when the build is run again.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'prodsearch[distributed]')")
pytestmark = pytest.mark.slow  # a local Ray (~10 s to start) and a Ray Data job per test

from ray_helpers import dying_embedder  # noqa: E402

from fakes import fake_embedder  # noqa: E402
from prodsearch.catalog import read_catalog  # noqa: E402
from prodsearch.catalog.schema import ColumnMapping  # noqa: E402
from prodsearch.distributed.ray_encode import RayEncodeConfig, RayEncoder  # noqa: E402
from prodsearch.encoders.cache import FeatureCache  # noqa: E402
from prodsearch.errors import EncoderError, EncoderMismatchError  # noqa: E402
from prodsearch.search.builder import build_index, encode_products  # noqa: E402
from prodsearch.search.recipe import EmbedderRecipe  # noqa: E402

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def local_ray():
    path = os.pathsep.join([str(HERE), str(HERE.parent)])  # the workers import fakes / ray_helpers
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={
            "env_vars": {"PYTHONPATH": path},
            "worker_process_setup_hook": "ray_helpers.register_fakes",  # `--text-encoder fake-text` works
        },
    )
    yield
    ray.shutdown()


@pytest.fixture
def products(tiny_catalog, tiny_mapping):
    return read_catalog(tiny_catalog, tiny_mapping).products


def _encoder(tmp_path: Path, factory=fake_embedder, **cfg) -> RayEncoder:
    cfg = {"actors": 2, "batch_size": 4, **cfg}
    return RayEncoder(RayEncodeConfig(**cfg), factory, cache=FeatureCache(tmp_path / "features"))


def _assert_same(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for kind, (pos, vecs) in want.items():
        assert got[kind][0] == pos, kind
        assert got[kind][1].dtype == np.float32
        np.testing.assert_array_equal(got[kind][1], vecs, err_msg=kind)


def test_ray_vectors_identical_to_single_process_and_resumed_from_cache(local_ray, tmp_path, products):
    emb = fake_embedder()
    want = encode_products(emb, products)
    enc = _encoder(tmp_path)
    _assert_same(enc(emb, products), want)
    rep = enc.report
    assert (rep.products, rep.items, rep.cached, rep.computed) == (12, 24, 0, 24)  # 12 texts + 12 photos
    assert rep.batches >= 3  # batches of 4 products
    assert set(rep.timings) >= {"plan", "load", "read", "decode", "encode", "write", "commit", "wall"}
    assert all(v >= 0 for v in rep.timings.values()) and rep.timings["encode"] > 0

    again = _encoder(tmp_path)  # a second run finds everything written: no Ray job at all
    _assert_same(again(emb, products), want)
    assert (again.report.cached, again.report.computed, again.report.batches) == (24, 0, 0)


def test_a_killed_actor_is_restarted_and_the_result_is_unchanged(local_ray, tmp_path, products):
    marker = tmp_path / "died"
    enc = _encoder(tmp_path, functools.partial(dying_embedder, str(marker), die_on_call=1))
    got = enc(fake_embedder(), products)
    assert marker.exists(), "no actor died: the test did not test anything"
    _assert_same(got, encode_products(fake_embedder(), products))
    assert enc.report.computed == 24


def test_a_dead_job_is_resumed_without_redoing_written_batches(local_ray, tmp_path, products):
    # One actor, never restarted, that dies on its second batch: the job fails.
    marker = tmp_path / "died"
    dying = functools.partial(dying_embedder, str(marker), die_on_call=2, every_process=True)
    enc = _encoder(tmp_path, dying, actors=1, max_restarts=0)
    with pytest.raises(EncoderError, match="Ray encoding job failed after") as err:
        enc(fake_embedder(), products)
    assert "will not be redone" in str(err.value)
    cache = FeatureCache(tmp_path / "features")
    emb = fake_embedder()
    written = cache.count(emb.text.spec_hash()) + cache.count(emb.image.spec_hash())
    assert 0 < written < 24, written

    resumed = _encoder(tmp_path)
    _assert_same(resumed(emb, products), encode_products(emb, products))
    assert (resumed.report.cached, resumed.report.computed) == (written, 24 - written)


def _same_search(built: Path, reference: Path, photo: Path) -> None:
    """Each signal scores every product as in the reference build. (Products committed in another
    order get other internal ids, which only breaks ties between equal scores differently.)"""
    from prodsearch.search.engine import Engine

    emb = fake_embedder()
    with Engine.open(reference, embedder=emb) as a, Engine.open(built, embedder=emb) as b:
        queries = ({"text": "red shirt", "mode": "text"}, {"text": "black leather", "mode": "lexical"})
        for kw in (*queries, {"image": photo, "mode": "image"}):
            want = {h.id: round(h.score, 6) for h in a.search(k=12, **kw).results}
            assert {h.id: round(h.score, 6) for h in b.search(k=12, **kw).results} == want, kw


def _committed(index: Path) -> int:
    from prodsearch.catalog.store import ProductStore

    with ProductStore(index) as store:
        return len(store)


def test_batches_are_committed_as_they_arrive_and_a_dead_job_resumes_from_the_index(
    local_ray, tmp_path, tiny_catalog, tiny_mapping, products
):
    """No feature cache between the runs: what the second build skips, it skips because the
    index already holds it (each Ray batch was one logged commit through the IndexWriter)."""
    reference = tmp_path / "reference"
    build_index(tiny_catalog, reference, mapping=tiny_mapping, embedder=fake_embedder())

    out = tmp_path / "idx"
    marker = tmp_path / "died"
    dying = functools.partial(dying_embedder, str(marker), die_on_call=3, every_process=True)
    enc = RayEncoder(
        RayEncodeConfig(actors=1, batch_size=2, max_restarts=0), dying, cache=FeatureCache(tmp_path / "f1")
    )
    with pytest.raises(EncoderError, match="Ray encoding job failed after"):
        build_index(tiny_catalog, out, mapping=tiny_mapping, embedder=fake_embedder(), encode=enc)
    committed = _committed(out)
    assert committed == enc.report.batches * 2 and 0 < committed < 12, committed
    from prodsearch.search.engine import Engine

    with Engine.open(out, embedder=fake_embedder()) as engine:  # a consistent, searchable part
        assert len(engine) == committed
        assert len(engine.search(text="shirt", k=12, mode="text").results) == committed

    again = RayEncoder(
        RayEncodeConfig(actors=1, batch_size=2), fake_embedder, cache=FeatureCache(tmp_path / "f2")
    )
    report = build_index(tiny_catalog, out, mapping=tiny_mapping, embedder=fake_embedder(), encode=again)
    assert (report.encoded_text, report.encoded_images) == (12 - committed, 12 - committed)
    assert (report.added, report.unchanged) == (12 - committed, committed)
    assert again.report.computed == 2 * (12 - committed) and again.report.timings["commit"] > 0
    _same_search(out, reference, tiny_catalog.parent / "images" / "p04.jpg")


DRIVER = """
import functools, sys
sys.path[:0] = {paths!r}
import ray
ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, runtime_env={{
    "env_vars": {{"PYTHONPATH": {pythonpath!r}}}, "worker_process_setup_hook": "ray_helpers.register_fakes"}})
from ray_helpers import slow_embedder
from fakes import fake_embedder
from prodsearch.catalog.schema import ColumnMapping
from prodsearch.distributed.ray_encode import RayEncodeConfig, RayEncoder
from prodsearch.encoders.cache import FeatureCache
from prodsearch.search.builder import build_index

class Announce(RayEncoder):  # says when each batch is committed (the builder resumed the stream)
    def stream(self, *args, **kwargs):
        for chunk in super().stream(*args, **kwargs):
            yield chunk
            print("committed", len(chunk[0]), flush=True)

enc = Announce(RayEncodeConfig(actors=1, batch_size=2), functools.partial(slow_embedder, 0.5),
               cache=FeatureCache({cache!r}))
build_index({catalog!r}, {out!r}, mapping=ColumnMapping.from_dict({mapping!r}), embedder=fake_embedder(), encode=enc)
print("finished", flush=True)
"""


def test_a_killed_driver_leaves_a_consistent_index_and_the_rerun_encodes_only_the_rest(
    local_ray, tmp_path, tiny_catalog, tiny_mapping
):
    import signal
    import subprocess
    import sys

    import psutil

    out = tmp_path / "idx"
    script = DRIVER.format(
        paths=[str(HERE), str(HERE.parent)],
        pythonpath=os.pathsep.join([str(HERE), str(HERE.parent)]),
        cache=str(tmp_path / "f1"),
        catalog=str(tiny_catalog),
        out=str(out),
        mapping=tiny_mapping.to_dict(),
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # blocks until the first batch is committed
        assert line.startswith("committed"), line
        family = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGKILL)  # no cleanup, no finally: as a lost node or an OOM kill
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        for child in family if "family" in locals() else []:  # the Ray processes it started
            try:
                child.kill()
            except psutil.NoSuchProcess:
                pass
    committed = _committed(out)
    assert 2 <= committed < 12, committed

    again = RayEncoder(
        RayEncodeConfig(actors=1, batch_size=4), fake_embedder, cache=FeatureCache(tmp_path / "f2")
    )
    report = build_index(tiny_catalog, out, mapping=tiny_mapping, embedder=fake_embedder(), encode=again)
    assert (report.encoded_text, report.added, report.unchanged) == (
        12 - committed,
        12 - committed,
        committed,
    )
    reference = tmp_path / "reference"
    build_index(tiny_catalog, reference, mapping=tiny_mapping, embedder=fake_embedder())
    _same_search(out, reference, tiny_catalog.parent / "images" / "p04.jpg")


def test_a_photo_broken_after_validation_is_named(local_ray, tmp_path, products):
    from prodsearch.errors import ImageError

    broken = next(p for p in products if p.id == "p05")
    Path(broken.image_path).write_bytes(b"\xff\xd8 not a jpeg any more")
    with pytest.raises(ImageError, match="p05.jpg"):
        _encoder(tmp_path, actors=1)(fake_embedder(), products)


def test_actors_with_another_encoder_are_refused():
    """Each actor checks the embedder it built against the driver's (run here, without Ray)."""
    from fakes import FakeImageEncoder, FakeTextEncoder
    from prodsearch.distributed.ray_encode import _EncoderActor
    from prodsearch.encoders.base import Embedder

    def other() -> Embedder:  # same towers, but not aligned: a different spec
        return Embedder(FakeTextEncoder(), FakeImageEncoder(), aligned=False, name="fake")

    with pytest.raises(EncoderMismatchError, match="differs in: aligned"):
        _EncoderActor(other, fake_embedder().spec())
    assert _EncoderActor(fake_embedder, fake_embedder().spec()).embedder.name == "fake"


def test_cli_index_with_ray(local_ray, tmp_path, tiny_catalog, capsys, monkeypatch):
    from prodsearch.cli import main
    from prodsearch.search import layout

    monkeypatch.setenv("PRODSEARCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "idx"
    argv = ["index", str(tiny_catalog), "--out", str(out), "--text-encoder", "fake-text"]
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--image-encoder", "fake-image", "--ray", "auto", "--ray-actors", "1"])
    assert exc.value.code == 0
    stdout = capsys.readouterr().out
    assert "added 12" in stdout and "encoded 12 texts, 12 images" in stdout
    assert "ray: 12 products, 24 vectors: 0 from the feature cache, 24 encoded" in stdout
    assert layout.Manifest.load(out).counts == {"products": 12, "text": 12, "image": 12}
    # the index searches exactly like one built in this process
    from prodsearch.search.engine import Engine

    local = tmp_path / "local"
    mapping = ColumnMapping.from_dict(layout.Manifest.load(out).mapping)
    build_index(
        tiny_catalog,
        local,
        mapping=mapping,
        recipe=EmbedderRecipe(text_encoder="fake-text", image_encoder="fake-image"),
    )
    photo = tiny_catalog.parent / "images" / "p04.jpg"
    with Engine.open(local) as a, Engine.open(out) as b:
        for kw in ({"text": "red shirt"}, {"text": "black leather", "mode": "text"}, {"image": photo}):
            ha = [(h.id, round(h.score, 6)) for h in a.search(k=12, **kw).results]
            assert ha == [(h.id, round(h.score, 6)) for h in b.search(k=12, **kw).results], kw


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:9", "Ray cluster at 127.0.0.1:9 did not answer"),
        ("ray://127.0.0.1:9", "Ray cluster at 127.0.0.1:9 did not answer"),
        ("nowhere", "expected auto, local[:N], HOST:PORT"),
        ("local:0", "expected local or local:N"),
    ],
)
def test_cli_bad_ray_address_fails_before_writing_anything(tmp_path, tiny_catalog, capsys, address, expected):
    from prodsearch.cli import main

    out = tmp_path / "idx"
    with pytest.raises(SystemExit) as exc:
        main(["index", str(tiny_catalog), "--out", str(out), "--ray", address])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and expected in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_an_actor_gives_encode_products_vectors_for_every_kind(products):
    """Text, photo and a trained model's joint vectors, as the single-process build computes them
    (the actor run here, without Ray)."""
    from fakes import FakeImageEncoder, FakeTextEncoder
    from prodsearch.distributed.ray_encode import _EncoderActor, _read_stage
    from prodsearch.encoders.base import Embedder

    def with_joint() -> Embedder:
        return Embedder(
            FakeTextEncoder(), FakeImageEncoder(), aligned=True, name="fake", joint=fake_embedder()
        )

    want = encode_products(with_joint(), products)
    assert sorted(want) == ["image", "joint", "text"]
    n = len(products)
    batch = {
        "pos": np.arange(n),
        "kinds": np.array(["text,image,joint"] * (n - 1) + ["joint"], dtype=object),
        "text": np.array([p.full_text() for p in products], dtype=object),
        "path": np.array([p.image_path for p in products], dtype=object),
        "need_image": np.ones(n, dtype=bool),
    }
    out = _EncoderActor(with_joint, with_joint().spec())(_read_stage(batch))
    for kind, (pos, vecs) in want.items():
        rows = [i for i in pos if kind in batch["kinds"][i]]
        got = np.stack([np.frombuffer(out[f"vec_{kind}"][i], dtype=np.float32) for i in rows])
        np.testing.assert_array_equal(got, vecs[rows], err_msg=kind)
    assert out["vec_text"][n - 1] == b"" and out["vec_image"][n - 1] == b""  # only what was asked
