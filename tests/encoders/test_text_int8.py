"""The int8 MiniLM (issue 8: int8 encoders on onnxruntime): close to float32 but its own spec, the
same vectors through the torch-free query path, refused where it cannot run, and usable as an
index's text encoder from the command line."""

from __future__ import annotations

import numpy as np
import pytest

from prodsearch.encoders.base import create_encoder
from prodsearch.encoders.text import SentenceTransformerEncoder, load_sentence_transformer
from prodsearch.errors import EncoderError

TEXTS = ["red dress", "crimson evening gown", "laptop charger 65 W", "navy blue shirt for men", ""]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PRODSEARCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.slow
def test_int8_is_close_to_float32_with_its_own_spec_and_a_congruent_light_path(cache):
    from prodsearch.encoders.text_light import LightTextEncoder

    fp32 = create_encoder("minilm")
    a = fp32.encode(TEXTS)
    int8 = create_encoder("minilm-int8")
    assert not isinstance(int8, LightTextEncoder) and int8.precision == "int8"
    b = int8.encode(TEXTS)
    cos = (a * b).sum(1)
    assert cos.min() > 0.95 and np.abs(a - b).max() > 1e-4  # close, but really quantized
    assert np.allclose(np.linalg.norm(b, axis=1), 1, atol=1e-5)
    sims = b @ b.T  # still the same model: a dress is nearer a gown than a charger
    assert sims[0, 1] > sims[0, 2]
    assert int8.spec()["precision"] == "int8" and "precision" not in fp32.spec()
    assert int8.spec_hash() != fp32.spec_hash() and int8.name == "minilm-int8"
    assert len(list((cache / "onnx").glob("*.onnx"))) == 3  # float32, its int8-source twin, int8
    light = create_encoder("minilm-int8")  # the next process starts from the int8 bundle
    assert isinstance(light, LightTextEncoder) and light.spec() == int8.spec()
    np.testing.assert_allclose(light.encode(TEXTS), b, atol=1e-5)
    light32 = create_encoder("minilm")  # and the float32 bundle is still the float32 one
    assert light32.spec() == fp32.spec()
    np.testing.assert_allclose(light32.encode(TEXTS), a, atol=1e-5)


def test_int8_needs_onnxruntime_and_a_known_precision(cache):
    model = load_sentence_transformer(None)
    with pytest.raises(EncoderError, match="backend='torch'"):
        SentenceTransformerEncoder(model, backend="torch", precision="int8")
    with pytest.raises(EncoderError, match="precision must be one of"):
        SentenceTransformerEncoder(model, precision="fp8")


@pytest.mark.slow
def test_an_index_built_with_int8_text_searches_and_refuses_float32(tmp_path, tiny_catalog, cache, capsys):
    from cli_helpers import run_cli

    def run(*argv: str) -> tuple[int, str, str]:
        return run_cli(capsys, *argv)

    idx = tmp_path / "idx"
    code, out, err = run("index", str(tiny_catalog), "--out", str(idx), "--text-encoder", "minilm-int8",
                         "--image-encoder", "none")  # fmt: skip
    assert code == 0, out + err
    code, out, err = run("search", str(idx), "red dress", "--json")
    assert code == 0, err
    assert '"id"' in out
    code, _, err = run("index", str(tiny_catalog), "--out", str(idx), "--text-encoder", "minilm",
                       "--image-encoder", "none")  # fmt: skip
    assert code == 2 and "built with encoder" in err
