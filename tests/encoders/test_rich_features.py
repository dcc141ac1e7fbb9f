"""Rich image features: the colour histogram by hand, the pooled prefix, onnx == torch, and the
train-time tower == the search-time encoder (issue 8)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from prodsearch.encoders.image import (
    COLOUR_BINS,
    FEATURE_DIM,
    RICH_TAPS,
    EfficientNetLiteEncoder,
    ImagePreprocessor,
    PooledView,
    build_backbone,
    colour_histogram,
)
from prodsearch.training.model import ImageTower, colour_histogram_torch


@pytest.fixture(scope="module")
def rich_lite0():
    torch.manual_seed(0)
    return build_backbone("lite0", 64, pretrained=False, taps=RICH_TAPS)


def _photo(colour=(200, 10, 10), size=(30, 40)) -> Image.Image:
    img = Image.new("RGB", size, (255, 255, 255))
    ImageDraw.Draw(img).rectangle([5, 5, 24, 34], fill=colour)
    return img


def test_colour_histogram_by_hand():
    sq = np.asarray(ImagePreprocessor(64).square(_photo()))
    h = colour_histogram(sq)
    # every foreground pixel is (200, 10, 10) -> cell (200*5//256, 0, 0) = (3, 0, 0); white is not foreground
    assert h.shape == (COLOUR_BINS**3,)
    cell = (3 * COLOUR_BINS + 0) * COLOUR_BINS + 0
    # (bicubic resizing blends a few edge pixels into neighbouring cells)
    assert h.argmax() == cell and h[cell] ** 2 > 0.8 and np.isclose((h**2).sum(), 1.0)
    # a white product on white: no foreground -> all pixels count, all in the top cell
    white = colour_histogram(np.full((8, 8, 3), 255, np.uint8))
    assert white[-1] == pytest.approx(1.0)


def test_colour_histogram_torch_twin_equals_numpy():
    pre = ImagePreprocessor(64)
    imgs = [_photo(), _photo((20, 20, 180)), Image.new("RGB", (20, 20), (250, 250, 250))]
    pixels = torch.stack([pre(im) for im in imgs])
    ours = colour_histogram_torch(pixels, COLOUR_BINS).numpy()
    ref = np.stack([colour_histogram(np.asarray(pre.square(im))) for im in imgs])
    assert np.allclose(ours, ref, atol=1e-6)


def test_rich_feature_layout_and_pooled_prefix(rich_lite0):
    enc = EfficientNetLiteEncoder(backbone=rich_lite0, backend="torch", cache=False)
    assert enc.features == "rich" and enc.dim == FEATURE_DIM + sum(rich_lite0.tap_dims) + COLOUR_BINS**3
    torch.manual_seed(0)
    plain = EfficientNetLiteEncoder(backbone=build_backbone("lite0", 64, pretrained=False), cache=False)
    assert plain.features == "pooled" and plain.dim == FEATURE_DIM
    imgs = [_photo(), _photo((10, 150, 10))]
    rich, pooled = enc.encode(imgs), plain.encode(imgs)
    prefix = rich[:, :FEATURE_DIM] / np.linalg.norm(rich[:, :FEATURE_DIM], axis=1, keepdims=True)
    assert np.allclose(prefix, pooled, atol=1e-5)
    assert np.allclose(np.linalg.norm(rich, axis=1), 1.0, atol=1e-5)
    assert "colour_bins" in enc.spec() and "colour_bins" not in plain.spec()
    # feature_parts says where each part lies: the colour part is the photo's histogram
    parts = enc.feature_parts()
    assert parts == {
        "pooled": (0, FEATURE_DIM),
        "taps": (FEATURE_DIM, FEATURE_DIM + sum(rich_lite0.tap_dims)),
        "colour": (FEATURE_DIM + sum(rich_lite0.tap_dims), enc.dim),
    }
    start, stop = parts["colour"]
    colour = rich[:, start:stop] / np.linalg.norm(rich[:, start:stop], axis=1, keepdims=True)
    hist = np.stack([colour_histogram(np.asarray(ImagePreprocessor(64).square(im))) for im in imgs])
    assert np.allclose(colour, hist, atol=1e-5)
    assert plain.feature_parts() == {"pooled": (0, FEATURE_DIM)}


def test_rich_onnx_matches_torch(rich_lite0):
    imgs = [_photo(), _photo((10, 150, 10)), _photo((20, 20, 20))]
    a = EfficientNetLiteEncoder(backbone=rich_lite0, backend="torch", cache=False).encode(imgs)
    b = EfficientNetLiteEncoder(backbone=rich_lite0, backend="onnx", cache=False).encode(imgs)
    assert np.abs(a - b).max() < 1e-4


def test_train_time_tower_equals_search_time_encoder(rich_lite0):
    """The unlocked image tower (training) and the encoder (index, queries) give the same features."""
    enc = EfficientNetLiteEncoder(backbone=rich_lite0, backend="torch", cache=False)
    tower = ImageTower(rich_lite0, 1280).eval()
    assert tower.dim == enc.dim
    imgs = [_photo(), _photo((10, 150, 10))]
    with torch.no_grad():
        t = tower(torch.stack([enc.preprocessor(im) for im in imgs])).numpy()
    assert np.allclose(t, enc.encode(imgs), atol=1e-5)


def test_pooled_view_is_the_pooled_encoder_with_its_spec(rich_lite0, tmp_path):
    """An index built with a trained model keeps untuned photo vectors identical (vectors and spec)
    to an untuned index's, from the one pass that also feeds the trained heads."""
    from prodsearch.encoders.cache import FeatureCache

    rich = EfficientNetLiteEncoder(backbone=rich_lite0, backend="torch", cache=FeatureCache(tmp_path))
    view = PooledView(rich)
    torch.manual_seed(0)
    plain = EfficientNetLiteEncoder(backbone=build_backbone("lite0", 64, pretrained=False), cache=False)
    assert view.spec() == plain.spec() and view.dim == plain.dim == FEATURE_DIM
    paths = []
    for i, colour in enumerate([(200, 10, 10), (10, 150, 10)]):
        paths.append(tmp_path / f"{i}.png")
        _photo(colour).save(paths[-1])
    got = view.encode_paths([str(p) for p in paths])
    assert np.allclose(got, plain.encode([str(p) for p in paths]), atol=1e-5)
    calls = rich.forward_calls
    rich.encode_paths([str(p) for p in paths])  # the rich features were cached by the view's pass
    assert rich.forward_calls == calls
    with pytest.raises(Exception, match="rich"):
        PooledView(plain)
