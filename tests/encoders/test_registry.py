from __future__ import annotations

import subprocess
import sys

import pytest

from prodsearch.encoders import create_encoder, list_encoders
from prodsearch.errors import EncoderError


def test_builtin_names_are_registered_by_modality():
    assert {"minilm", "all-MiniLM-L6-v2", "sentence-transformers"} <= set(list_encoders("text"))
    assert {"efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"} <= set(list_encoders("image"))
    assert "minilm" not in list_encoders("image")


def test_unknown_name_lists_valid_names():
    with pytest.raises(EncoderError) as err:
        create_encoder("efficientnet-b9")
    msg = str(err.value)
    assert "'efficientnet-b9'" in msg and "efficientnet-lite0" in msg and "minilm" in msg


@pytest.mark.parametrize("name", ["hf-clip", "clip"])
def test_clip_without_path_is_a_clear_error(name):
    with pytest.raises(EncoderError, match=f"{name}:PATH"):
        create_encoder(name)


def test_sentence_transformers_needs_a_path():
    with pytest.raises(EncoderError, match="model_path"):
        create_encoder("sentence-transformers")


def test_listing_encoders_does_not_import_torch():
    code = "import sys; from prodsearch.encoders import list_encoders; list_encoders(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
