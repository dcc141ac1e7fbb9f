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
    assert enc.backend == "onnx"  # onnxruntime is installed here
    ref = SentenceTransformerEncoder(enc.model, backend="torch").encode(
        ["red dress", "crimson gown", "laptop charger"]
    )
    np.testing.assert_allclose(v, ref, atol=1e-4)
    alias = create_encoder("all-MiniLM-L6-v2")
    np.testing.assert_allclose(alias.encode(["red dress"]), v[:1], atol=1e-6)


# -- onnxruntime backend ---------------------------------------------------------------------------

MIXED = ["red dress", "a", "a blue cotton shirt with a red laptop charger and a gown", "", "crimson gown"]


def test_onnx_matches_torch_and_keeps_input_order(tiny_st):
    folder, _, _ = tiny_st
    st = load_sentence_transformer(folder)
    torch_enc = SentenceTransformerEncoder(st, backend="torch")
    # One text at a time: no padding, no sorting; the reference for each row.
    ref = np.concatenate([torch_enc.encode([t]) for t in MIXED])
    onnx_enc = SentenceTransformerEncoder(st, backend="onnx", workers=2)
    out = onnx_enc.encode(MIXED, batch_size=2)  # 3 length-sorted batches, run on 2 threads
    assert onnx_enc.backend == "onnx" and onnx_enc._session is not None
    assert out.shape == (5, 32) and out.dtype == np.float32
    np.testing.assert_allclose(out, ref, atol=1e-4)
    assert (np.sum(out * ref, axis=1) > 0.9999).all()
    # Rows are distinct, so a permuted result could not pass: each row's nearest reference is itself.
    np.testing.assert_array_equal((out @ ref.T).argmax(1), np.arange(5))
    np.testing.assert_allclose(torch_enc.encode(MIXED, batch_size=2), out, atol=1e-4)


def test_onnx_truncates_at_max_seq_length_like_torch(tiny_st):
    folder, _, _ = tiny_st
    st = load_sentence_transformer(folder)
    long = " ".join(WORDS * 5)  # 50 words > max_seq_length 24
    texts = [long, long + " red", "red"]
    out = SentenceTransformerEncoder(st, backend="onnx").encode(texts)
    np.testing.assert_allclose(out, SentenceTransformerEncoder(st, backend="torch").encode(texts), atol=1e-4)
    np.testing.assert_allclose(out[0], out[1], atol=1e-6)  # the extra word is cut off


def test_onnx_export_is_reused_by_the_next_encoder(tiny_st, monkeypatch):
    from prodsearch.encoders import onnx_runtime, text

    folder, _, _ = tiny_st
    calls = []
    real = text.export_transformer_onnx
    monkeypatch.setattr(text, "export_transformer_onnx", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = SentenceTransformerEncoder(load_sentence_transformer(folder), backend="onnx")
    a = first.encode(MIXED)
    path = onnx_runtime.onnx_path(first.spec_hash())
    assert calls == [1] and path.is_file()
    second = SentenceTransformerEncoder(load_sentence_transformer(folder), backend="onnx")
    np.testing.assert_array_equal(second.encode(MIXED), a)
    assert calls == [1] and second.backend == "onnx"
    path.write_bytes(b"not an onnx model")  # a damaged export is replaced, not fatal
    third = SentenceTransformerEncoder(load_sentence_transformer(folder), backend="onnx")
    np.testing.assert_allclose(third.encode(MIXED), a, atol=1e-6)
    assert calls == [1, 1] and third.backend == "onnx"


def test_falls_back_to_torch_when_onnxruntime_cannot_be_imported(tiny_st, monkeypatch):
    import sys

    folder, _, _ = tiny_st
    st = load_sentence_transformer(folder)
    ref = SentenceTransformerEncoder(st, backend="torch").encode(MIXED)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` raises ImportError
    for backend in ("auto", "onnx"):
        enc = SentenceTransformerEncoder(st, backend=backend)
        assert enc.backend == "torch"
        np.testing.assert_allclose(enc.encode(MIXED), ref, atol=1e-6)


def test_a_failed_export_falls_back_to_torch(tiny_st, monkeypatch):
    from prodsearch.encoders import text

    folder, _, _ = tiny_st
    st = load_sentence_transformer(folder)

    def broken(*a, **k):
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(text, "export_transformer_onnx", broken)
    enc = SentenceTransformerEncoder(st, backend="onnx")
    out = enc.encode(MIXED)
    assert enc.backend == "torch" and enc._session is None
    np.testing.assert_allclose(out, SentenceTransformerEncoder(st, backend="torch").encode(MIXED), atol=1e-6)


def test_an_export_that_disagrees_with_torch_is_discarded(tiny_st, monkeypatch, caplog):
    from prodsearch.encoders import onnx_runtime, text

    folder, _, _ = tiny_st
    st = load_sentence_transformer(folder)
    real = text._torch_hidden_states
    # The verification reference is perturbed, as if the exported graph had gone wrong.
    monkeypatch.setattr(text, "_torch_hidden_states", lambda plan, feats: real(plan, feats) + 0.1)
    enc = SentenceTransformerEncoder(st, backend="onnx")
    with caplog.at_level("WARNING", logger="prodsearch.encoders.text"):
        out = enc.encode(MIXED)
    assert "differs from torch by 1.00e-01" in caplog.text
    assert enc.backend == "torch" and not onnx_runtime.onnx_path(enc.spec_hash()).exists()
    np.testing.assert_allclose(out, SentenceTransformerEncoder(st, backend="torch").encode(MIXED), atol=1e-6)


def test_duplicates_are_encoded_once(tiny_st, monkeypatch):
    folder, _, _ = tiny_st
    enc = SentenceTransformerEncoder(load_sentence_transformer(folder), backend="onnx")
    seen: list[str] = []
    real = enc._run
    monkeypatch.setattr(enc, "_run", lambda batch: seen.extend(batch) or real(batch))
    texts = ["red dress", "blue shirt", "red dress", "", "", "blue shirt"]
    out = enc.encode(texts)
    assert sorted(seen) == ["", "blue shirt", "red dress"]
    np.testing.assert_array_equal(out[[2, 4, 5]], out[[0, 3, 1]])
    np.testing.assert_allclose(
        out, SentenceTransformerEncoder(enc.model, backend="torch").encode(texts), atol=1e-4
    )


@pytest.mark.parametrize("mode", ["mean", "cls", "max", "mean_sqrt_len_tokens", ("cls", "mean")])
def test_numpy_pooling_matches_sentence_transformers(mode):
    from sentence_transformers.sentence_transformer import modules as models

    from prodsearch.encoders.text import _OnnxPlan

    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(3, 5, 4, generator=gen)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]])
    pooling = models.Pooling(4, pooling_mode=mode)
    ref = pooling({"token_embeddings": hidden, "attention_mask": mask})["sentence_embedding"].numpy()
    plan = _OnnxPlan.__new__(_OnnxPlan)
    plan.modes = (mode,) if isinstance(mode, str) else mode
    np.testing.assert_allclose(plan.pool(hidden.numpy(), mask.numpy()), ref, atol=1e-6)
    if mode == "mean":  # hand-computed: the second row averages its two real tokens only
        np.testing.assert_allclose(ref[1], hidden[1, :2].mean(0).numpy(), atol=1e-6)


def test_pipelines_onnx_cannot_reproduce_stay_on_torch(tiny_st):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import modules as models

    folder, _, _ = tiny_st
    base = load_sentence_transformer(folder)
    dense = SentenceTransformer(modules=[*base, models.Dense(32, 8)], device="cpu")
    dense._prodsearch_path = str(folder)
    enc = SentenceTransformerEncoder(dense, backend="auto")
    assert enc.backend == "torch" and enc.encode(["red dress"]).shape == (1, 8)


def test_bad_backend_and_options_are_clear_errors(tiny_st):
    folder, _, _ = tiny_st
    with pytest.raises(EncoderError, match="backend must be 'auto', 'onnx' or 'torch', got 'gpu'"):
        SentenceTransformerEncoder(load_sentence_transformer(folder), backend="gpu")
    with pytest.raises(EncoderError, match=r"unexpected options for 'sentence-transformers': \['colour'\]"):
        create_encoder("sentence-transformers", model_path=str(folder), colour="red")
    enc = create_encoder("sentence-transformers", model_path=str(folder), backend="torch", workers=1)
    assert enc.backend == "torch" and enc.workers == 1


# -- torch-free query encoder (encoders/text_light.py) ---------------------------------------------


def test_light_encoder_is_congruent_with_the_full_encoder(tiny_st):
    from prodsearch.encoders.text_light import LightTextEncoder, load_light_encoder

    folder, _, _ = tiny_st
    assert load_light_encoder(folder) is None  # no ONNX export yet: nothing to start from
    full = create_encoder("sentence-transformers", model_path=str(folder))
    assert not isinstance(full, LightTextEncoder)
    long = " ".join(WORDS * 5)  # truncated at max_seq_length 24
    texts = [*MIXED, long, long + " red", "RED Dress", "unknownword gown", "crimson, gown!"]
    ref = full.encode(texts, batch_size=3)  # the first ONNX run writes the query bundle
    light = create_encoder("sentence-transformers", model_path=str(folder))
    assert isinstance(light, LightTextEncoder) and light.model is None
    assert light.spec() == full.spec() and light.dim == full.dim and light.name == full.name
    for batch_size in (1, 3, 64):  # padding differs with the batch; the vectors may not
        np.testing.assert_allclose(light.encode(texts, batch_size=batch_size), ref, atol=1e-5)
    feats_full, feats_light = full._plan.tokenize(texts), light._plan.tokenize(texts)
    for name in full._plan.input_names:  # token for token, the same inputs
        np.testing.assert_array_equal(feats_light[name], feats_full[name])
    assert create_encoder("sentence-transformers", model_path=str(folder), backend="torch").model is not None


def test_light_bundle_is_not_reused_after_the_model_folder_changes(tiny_st, tmp_path):
    import shutil

    from prodsearch.encoders.text_light import folder_key, load_light_encoder

    folder, _, _ = tiny_st
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    create_encoder("sentence-transformers", model_path=str(copy)).encode(["red dress"])
    assert load_light_encoder(copy) is not None
    before = folder_key(copy)
    (copy / "config_sentence_transformers.json").write_text(
        (copy / "config_sentence_transformers.json").read_text() + " "
    )
    assert folder_key(copy) != before and load_light_encoder(copy) is None


@pytest.mark.slow
def test_minilm_query_in_a_fresh_process_does_not_import_torch(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "PRODSEARCH_CACHE": str(tmp_path / "cache")}
    code = (
        "import sys\nfrom prodsearch.encoders.base import create_encoder\n"
        "enc = create_encoder('minilm'); v = enc.encode(['navy blue shirt for men'])\n"
        "print(type(enc).__name__, 'torch' in sys.modules, ' '.join(f'{x:.6f}' for x in v[0][:8]))\n"
    )
    first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    second = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    kind1, torch1, *vec1 = first.stdout.split()
    kind2, torch2, *vec2 = second.stdout.split()
    assert (kind1, torch1) == ("SentenceTransformerEncoder", "True")  # exports, writes the bundle
    assert (kind2, torch2) == ("LightTextEncoder", "False")
    np.testing.assert_allclose(np.array(vec2, float), np.array(vec1, float), atol=1e-5)
