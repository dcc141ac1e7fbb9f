"""Ray Data encoding on a local Ray started here (one per module: start-up costs ~10 s).

The single-process path (:func:`encode_products`) is the reference: the Ray path must return
the same vectors bit for bit, also after an actor is killed mid-job, and a job that dies must
not redo the batches it already wrote when it is run again.
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
    assert (rep.items, rep.cached, rep.computed) == (24, 0, 24)  # 12 texts + 12 photos, all distinct
    assert rep.batches >= 6
    assert set(rep.timings) >= {"plan", "load", "read", "decode", "encode", "write", "wall"}
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
    # One actor, never restarted, that dies on its second photo batch: the job fails.
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
    assert "ray: 24 unique items, 0 from the feature cache, 24 encoded" in stdout
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
