from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from prodsearch.catalog.images import file_sha256
from prodsearch.encoders.base import Encoder, l2_normalize
from prodsearch.encoders.cache import CachedImageEncoder, FeatureCache, encode_with_cache
from prodsearch.encoders.image import EfficientNetLiteEncoder


class CountingEncoder(Encoder):
    """Image 'encoder' whose vector is the mean RGB colour; counts the items it computes."""

    modality = "image"
    dim = 3

    def __init__(self, version: int = 1):
        self.name, self.version, self.computed = "mean-rgb", version, []

    def encode(self, items, *, batch_size=64, progress=False):
        self.computed.extend(str(p) for p in items)
        return l2_normalize(
            np.stack([np.asarray(Image.open(p).convert("RGB"), np.float32).mean((0, 1)) + 1 for p in items])
        )

    def spec(self):
        return {"name": self.name, "version": self.version, "dim": 3}


@pytest.fixture
def photos(tmp_path):
    paths = []
    for i, c in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
        p = tmp_path / f"img{i}.png"
        Image.new("RGB", (8, 8), c).save(p)
        paths.append(str(p))
    return paths


def test_put_get_roundtrip_and_missing_keys(tmp_path):
    cache = FeatureCache(tmp_path / "feat")
    vecs = np.arange(6, dtype=np.float32).reshape(2, 3)
    cache.put_many("spec1", ["a", "b"], vecs)
    got = cache.get_many("spec1", ["b", "zz", "a", "b"], 3)
    np.testing.assert_array_equal(got[0], vecs[1])
    assert got[1] is None
    np.testing.assert_array_equal(got[2], vecs[0])
    np.testing.assert_array_equal(got[3], vecs[1])
    assert cache.get_many("spec2", ["a"], 3) == [None]  # other spec: other keys
    assert cache.get_many("spec1", ["a"], 4) == [None]  # wrong dim is never returned
    cache.close()
    reopened = FeatureCache(tmp_path / "feat")  # persistent across instances (runs)
    np.testing.assert_array_equal(reopened.get_many("spec1", ["a"], 3)[0], vecs[0])
    assert reopened.count("spec1") == 2


def test_many_keys_batched(tmp_path):
    cache = FeatureCache(tmp_path)
    keys = [f"k{i}" for i in range(1234)]
    vecs = np.random.default_rng(0).normal(size=(1234, 4)).astype(np.float32)
    cache.put_many("s", keys, vecs)
    got = cache.get_many("s", keys[::-1], 4)
    np.testing.assert_array_equal(np.stack(got), vecs[::-1])


def test_second_encode_computes_nothing(tmp_path, photos):
    enc = CountingEncoder()
    cache = FeatureCache(tmp_path / "feat")
    first = encode_with_cache(enc, cache, photos)
    assert len(enc.computed) == 3
    np.testing.assert_allclose(first, enc.encode(photos), atol=1e-7)
    enc.computed.clear()
    again = CachedImageEncoder(enc, FeatureCache(tmp_path / "feat")).encode_paths(photos + photos[:1])
    assert enc.computed == []
    np.testing.assert_array_equal(again, np.concatenate([first, first[:1]]))


def test_only_missing_items_are_computed_and_duplicates_once(tmp_path, photos):
    enc = CountingEncoder()
    cache = FeatureCache(tmp_path)
    encode_with_cache(enc, cache, photos[:1])
    enc.computed.clear()
    hashes = [file_sha256(p) for p in photos]
    out = encode_with_cache(
        enc, cache, [photos[0], photos[1], photos[1], photos[2]], [hashes[0], None, hashes[1], None]
    )
    assert enc.computed == photos[1:]
    np.testing.assert_array_equal(out[1], out[2])


def test_keyed_by_content_not_path(tmp_path, photos):
    enc = CountingEncoder()
    cache = FeatureCache(tmp_path / "feat")
    encode_with_cache(enc, cache, photos)
    moved = tmp_path / "moved.png"
    moved.write_bytes(Path(photos[0]).read_bytes())
    enc.computed.clear()
    encode_with_cache(enc, cache, [str(moved)])
    assert enc.computed == []


def test_different_spec_uses_different_keys(tmp_path, photos):
    cache = FeatureCache(tmp_path)
    encode_with_cache(CountingEncoder(version=1), cache, photos)
    v2 = CountingEncoder(version=2)
    encode_with_cache(v2, cache, photos)
    assert len(v2.computed) == 3
    assert len(list(tmp_path.glob("*.sqlite"))) == 2


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupted_cache_file_is_recomputed_not_fatal(tmp_path, photos, damage):
    enc = CountingEncoder()
    root = tmp_path / "feat"
    expected = encode_with_cache(enc, FeatureCache(root), photos)
    path = FeatureCache(root).path(enc.spec_hash())
    data = path.read_bytes()
    for side in ("-wal", "-shm"):
        p = path.with_name(path.name + side)
        if p.exists():
            p.unlink()
    path.write_bytes(b"\x00garbage" * 600 if damage == "garbage" else data[: len(data) // 3])
    enc.computed.clear()
    out = encode_with_cache(enc, FeatureCache(root), photos)
    np.testing.assert_allclose(out, expected, atol=1e-7)
    assert len(enc.computed) in (0, 3)  # a truncated file may still hold readable rows
    if damage == "garbage":
        assert len(enc.computed) == 3
        assert path.with_name(path.name + ".corrupt").exists()
    # and the rebuilt cache works again
    enc.computed.clear()
    encode_with_cache(enc, FeatureCache(root), photos)
    assert enc.computed == []


def test_wrong_length_blob_is_treated_as_missing(tmp_path, photos):
    enc = CountingEncoder()
    cache = FeatureCache(tmp_path)
    encode_with_cache(enc, cache, photos)
    cache.close()
    con = sqlite3.connect(cache.path(enc.spec_hash()))
    con.execute("UPDATE features SET vec = ? WHERE key = ?", (b"\x00" * 5, file_sha256(photos[0])))
    con.commit()
    con.close()
    enc.computed.clear()
    encode_with_cache(enc, FeatureCache(tmp_path), photos)
    assert enc.computed == photos[:1]


def test_efficientnet_encode_paths_uses_the_cache(random_lite0, tmp_path, photos):
    enc = EfficientNetLiteEncoder(backbone=random_lite0, backend="torch", cache=FeatureCache(tmp_path / "f"))
    first = enc.encode_paths(photos, None, batch_size=2)
    assert enc.forward_calls == 2
    np.testing.assert_allclose(first, enc.encode(photos), atol=1e-6)
    calls = enc.forward_calls
    again = enc.encode_paths(photos)
    assert enc.forward_calls == calls
    np.testing.assert_array_equal(again, first)
    off = EfficientNetLiteEncoder(backbone=random_lite0, backend="torch", cache=False)
    off.encode_paths(photos)
    assert off.forward_calls == 1 and off.feature_cache is None
