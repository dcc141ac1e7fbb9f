from __future__ import annotations

import numpy as np
import pytest
import torch

from prodsearch.encoders.base import create_encoder
from prodsearch.encoders.text import SentenceTransformerEncoder, load_sentence_transformer
from prodsearch.errors import EncoderError

WORDS = ["red", "blue", "dress", "shirt", "gown", "crimson", "laptop", "charger", "cotton", "a"]


@pytest.fixture(scope="module")
def tiny_st(tmp_path_factory):
    """A random-init 2-layer BERT (hidden 32) + mean pooling saved as a sentence-transformers folder."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import modules as models
    from transformers import BertConfig, BertModel, BertTokenizer

    root = tmp_path_factory.mktemp("st")
    hf = root / "hf"
    hf.mkdir()
    (hf / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    tok = BertTokenizer(str(hf / "vocab.txt"))
    torch.manual_seed(0)
    bert = BertModel(
        BertConfig(
            vocab_size=len(WORDS) + 5,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=37,
            max_position_embeddings=64,
        )
    ).eval()
    bert.save_pretrained(hf)
    tok.save_pretrained(hf)
    word = models.Transformer(str(hf), max_seq_length=24)
    st = SentenceTransformer(modules=[word, models.Pooling(32, pooling_mode="mean")], device="cpu")
    st.save(str(root / "tiny-st"))
    return root / "tiny-st", bert, tok


def test_local_folder_encoder_matches_mean_pooled_bert(tiny_st):
    folder, bert, tok = tiny_st
    enc = create_encoder("sentence-transformers", model_path=str(folder))
    texts = ["red dress", "a blue cotton shirt", "", "laptop charger"]
    out = enc.encode(texts, batch_size=3)
    assert enc.modality == "text" and enc.dim == 32 and out.shape == (4, 32) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1, atol=1e-6)
    with torch.no_grad():  # golden: mean of the last hidden states over real tokens, then L2
        t = tok(texts, padding=True, return_tensors="pt")
        h = bert(**t).last_hidden_state
        m = t["attention_mask"].unsqueeze(-1).float()
        ref = ((h * m).sum(1) / m.sum(1)).numpy()
    np.testing.assert_allclose(out, ref / np.linalg.norm(ref, axis=1, keepdims=True), atol=1e-5)
    np.testing.assert_array_equal(enc.encode(texts, batch_size=3), out)


def test_spec_names_model_library_and_weights(tiny_st):
    folder, _, _ = tiny_st
    enc = create_encoder("sentence-transformers", model_path=str(folder))
    spec = enc.spec()
    assert (
        spec["model"] == "tiny-st"
        and spec["dim"] == 32
        and spec["max_seq_length"] == 24
        and spec["normalize"]
    )
    assert spec["library"].startswith("sentence-transformers==") and len(spec["weights"]) == 16
    wrapped = SentenceTransformerEncoder(load_sentence_transformer(folder))
    assert (
        wrapped.spec() == spec
        and spec["name"] == "sentence-transformers:tiny-st"
        and wrapped.model is not None
    )
    assert enc.encode([]).shape == (0, 32)


def test_not_a_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(EncoderError, match="not a sentence-transformers model folder"):
        create_encoder("sentence-transformers", model_path=str(tmp_path))


@pytest.mark.slow
def test_minilm_semantics():
    enc = create_encoder("minilm")
    assert enc.dim == 384 and enc.spec()["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    v = enc.encode(["red dress", "crimson gown", "laptop charger"])
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2
    alias = create_encoder("all-MiniLM-L6-v2")
    np.testing.assert_allclose(alias.encode(["red dress"]), v[:1], atol=1e-6)
