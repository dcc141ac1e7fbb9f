"""Real EfficientNet-Lite0 weights on real catalog photos (slow)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import ImageOps

from prodsearch.catalog.images import load_image
from prodsearch.encoders.base import create_encoder


@pytest.mark.slow
def test_same_photo_padded_and_flipped_is_closer_than_another_product(shared_catalog):
    import csv

    with open(shared_catalog, encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))[:3000]
    by_type: dict[str, str] = {}
    for r in rows:
        by_type.setdefault(r["articleType"], r["image"])
    root = shared_catalog.parent
    shirt, watch, shoe = (root / by_type[t] for t in ("Tshirts", "Watches", "Casual Shoes"))
    enc = create_encoder("efficientnet-lite0", cache=False)
    a = load_image(shirt)
    variant = ImageOps.expand(ImageOps.mirror(a), border=(20, 0, 20, 10), fill=(255, 255, 255))
    v = enc.encode([a, variant, load_image(watch), load_image(shoe)])
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    sims = v[0] @ v.T
    assert sims[1] > max(sims[2], sims[3]) + 0.05, sims
    assert enc.spec()["preprocess"]["size"] == 224 and enc.backend in ("onnx", "torch")
