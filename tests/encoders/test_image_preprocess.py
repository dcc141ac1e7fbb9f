from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from prodsearch.encoders.image import PIXEL_MEAN, PIXEL_STD, ImagePreprocessor, preprocess_batch
from prodsearch.errors import EncoderError

RED = (200, 0, 0)


def _norm(v: float) -> float:
    return (v - 127.0) / 128.0


def test_normalisation_constants_are_tflite_efficientnet_lite():
    assert (PIXEL_MEAN, PIXEL_STD) == (127.0, 128.0)
    img = Image.new("RGB", (8, 8), (0, 127, 255))
    x = ImagePreprocessor(8).array(img)
    assert x.shape == (3, 8, 8) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 3, 3], [-127 / 128, 0.0, 1.0], atol=1e-7)


def test_wide_image_is_padded_top_and_bottom_with_white_not_cropped():
    # 40x20 red image, size 20: scaled to 20x10, pasted at rows 5..14 of a white 20x20 square.
    img = Image.new("RGB", (40, 20), RED)
    x = ImagePreprocessor(20).array(img)
    white, red = _norm(255), np.array([_norm(200), _norm(0), _norm(0)], np.float32)
    assert np.allclose(x[:, :5, :], white) and np.allclose(x[:, 15:, :], white)
    np.testing.assert_allclose(x[:, 6:14, :].reshape(3, -1).T, np.tile(red, (8 * 20, 1)), atol=2 / 128)
    # the full width is kept: the left- and right-most columns are red (no crop)
    np.testing.assert_allclose(x[:, 10, 0], red, atol=2 / 128)
    np.testing.assert_allclose(x[:, 10, 19], red, atol=2 / 128)


def test_tall_image_is_padded_left_and_right():
    img = Image.new("RGB", (10, 30), RED)  # -> 10x30 scaled to 10x30 at S=30, columns 10..19
    x = ImagePreprocessor(30).array(img)
    assert np.allclose(x[:, :, :10], _norm(255)) and np.allclose(x[:, :, 20:], _norm(255))
    np.testing.assert_allclose(x[0, :, 10:20], _norm(200), atol=1e-6)
    np.testing.assert_allclose(x[0, 0, 15], _norm(200), atol=1e-6)  # top row kept


def test_pixel_layout_is_rgb_chw_and_position_preserving():
    img = Image.new("RGB", (16, 16), (255, 255, 255))
    img.putpixel((3, 1), (10, 20, 30))  # x=3, y=1
    x = ImagePreprocessor(16).array(img)  # same size: no resampling
    np.testing.assert_allclose(x[:, 1, 3], [_norm(10), _norm(20), _norm(30)], atol=1e-7)
    assert np.allclose(np.delete(x.reshape(3, -1), 1 * 16 + 3, axis=1), 1.0)  # (255 - 127) / 128


def test_greyscale_and_rgba_inputs_become_three_channels():
    grey = Image.new("L", (12, 12), 100)
    x = ImagePreprocessor(12).array(grey)
    np.testing.assert_allclose(x, _norm(100), atol=1e-7)


def test_preprocess_batch_and_call_shapes():
    imgs = [Image.new("RGB", (30, 50), RED), Image.new("RGB", (70, 20), RED)]
    t = preprocess_batch(imgs, 32)
    assert tuple(t.shape) == (2, 3, 32, 32) and str(t.dtype) == "torch.float32"
    np.testing.assert_array_equal(t[1].numpy(), ImagePreprocessor(32)(imgs[1]).numpy())


@pytest.mark.parametrize("bad", [0, 4, 5000, 224.5, "224", True])
def test_bad_image_size_is_rejected(bad):
    with pytest.raises(EncoderError, match="image_size"):
        ImagePreprocessor(bad)
