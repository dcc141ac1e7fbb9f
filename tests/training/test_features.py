from __future__ import annotations

import numpy as np

from fakes import FakeTextEncoder
from prodsearch.training.features import encode_cached


class CountingEncoder(FakeTextEncoder):
    def __init__(self):
        super().__init__()
        self.items = 0

    def encode(self, items, **kw):
        self.items += len(items)
        return super().encode(items, **kw)


def test_encode_cached_dedups_and_caches():
    enc = CountingEncoder()
    texts = ["red shirt", "blue bag", "red shirt", "green dress", "blue bag"]
    a = encode_cached(enc, texts)
    assert enc.items == 3  # each distinct text once
    np.testing.assert_allclose(a, FakeTextEncoder().encode(texts), atol=1e-6)
    b = encode_cached(enc, texts)
    assert enc.items == 3 and np.array_equal(a, b)  # second call: from the disk cache
    c = encode_cached(enc, ["x", "y"], keys=["k", "k"])  # keys decide identity (e.g. photo hashes)
    assert np.array_equal(c[0], c[1])
