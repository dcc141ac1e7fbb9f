from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from prodsearch.encoders import clip as clipmod
from prodsearch.encoders.base import create_encoder
from prodsearch.encoders.clip import ClipImagePreprocessor, load_clip_embedder, parse_clip_spec
from prodsearch.errors import EncoderError

LETTERS = "abcdefghijklmnopqrstuvwxyz"
MEAN, STD = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A random-init transformers CLIP (text hidden 32, vision 30 px / patch 2, projection 16) + tokenizer."""
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    folder = tmp_path_factory.mktemp("tiny-clip")
    vocab = (
        ["<|startoftext|>", "<|endoftext|>", "<|unk|>"]
        + list(LETTERS)
        + [c + "</w>" for c in LETTERS]
        + ["re", "red</w>"]
    )
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\nr e\nre d</w>\n")
    tok = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), unk_token="<|unk|>")
    torch.manual_seed(0)
    cfg = CLIPConfig(
        text_config=dict(
            vocab_size=len(vocab),
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=16,
            eos_token_id=1,
            bos_token_id=0,
            pad_token_id=1,
        ),
        vision_config=dict(
            image_size=30,
            patch_size=2,
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
        ),
        projection_dim=16,
    )
    model = CLIPModel(cfg).eval()
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "crop_size": {"height": 30, "width": 30},
                "size": {"shortest_edge": 30},
                "image_mean": MEAN,
                "image_std": STD,
            }
        )
    )
    clipmod.clear_loaded()
    yield folder, model, tok
    clipmod.clear_loaded()


def _photos():
    return [Image.new("RGB", (20, 34), (200, 30, 30)), Image.new("RGB", (40, 24), (30, 30, 200))]


def test_parse_clip_spec():
    assert parse_clip_spec("hf-clip:/m/x#image") == ("hf-clip", "/m/x", "image")
    assert parse_clip_spec("clip:ViT-B-32@/w.pt") == ("clip", "ViT-B-32@/w.pt", "text")
    with pytest.raises(EncoderError, match="#audio"):
        parse_clip_spec("hf-clip:/m#audio")


def test_text_tower_matches_get_text_features(tiny_clip):
    folder, model, tok = tiny_clip
    enc = create_encoder(f"hf-clip:{folder}")
    texts = ["red", "a red dress", "blue"]
    out = enc.encode(texts, batch_size=2)
    assert enc.modality == "text" and enc.dim == 16 and out.shape == (3, 16) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1, atol=1e-6)
    with torch.no_grad():  # golden: the model's own API, padded per batch exactly as the encoder does
        ref = []
        for batch in (texts[:2], texts[2:]):
            t = tok(batch, padding=True, return_tensors="pt")
            f = model.get_text_features(**t)
            ref.append((f if isinstance(f, torch.Tensor) else f.pooler_output).numpy())
    ref = np.concatenate(ref)
    np.testing.assert_allclose(out, ref / np.linalg.norm(ref, axis=1, keepdims=True), atol=1e-5)
    np.testing.assert_array_equal(out, enc.encode(texts, batch_size=2))  # deterministic


def test_image_tower_matches_get_image_features(tiny_clip):
    folder, model, _ = tiny_clip
    enc = create_encoder(f"hf-clip:{folder}#image")
    imgs = _photos()
    out = enc.encode(imgs)
    assert enc.modality == "image" and out.shape == (2, 16)
    # golden: hand-made pixels: pad square on white, resize to 30, (x/255 - mean) / std
    from prodsearch.catalog.images import pad_to_square

    px = []
    for im in imgs:
        a = np.asarray(pad_to_square(im).resize((30, 30), Image.Resampling.BICUBIC), np.float32) / 255.0
        px.append(((a - MEAN) / STD).transpose(2, 0, 1))
    with torch.no_grad():
        f = model.get_image_features(pixel_values=torch.tensor(np.stack(px), dtype=torch.float32))
        ref = (f if isinstance(f, torch.Tensor) else f.pooler_output).numpy()
    np.testing.assert_allclose(out, ref / np.linalg.norm(ref, axis=1, keepdims=True), atol=1e-5)


def test_preprocessor_reads_folder_config_and_keeps_the_whole_image(tiny_clip):
    folder, _, _ = tiny_clip
    pre = ClipImagePreprocessor.from_folder(folder, default_size=224)
    assert pre.image_size == 30 and pre.spec()["mean"] == MEAN
    x = pre.array(Image.new("RGB", (10, 30), (0, 0, 0)))  # tall black bar: white left and right
    white = (1.0 - np.array(MEAN)) / np.array(STD)
    np.testing.assert_allclose(x[:, 15, 0], white, atol=1e-5)
    np.testing.assert_allclose(x[:, 0, 15], -np.array(MEAN) / np.array(STD), atol=1e-5)  # top row kept


def test_embedder_is_aligned_and_shares_one_model(tiny_clip):
    folder, _, _ = tiny_clip
    emb = load_clip_embedder(f"hf-clip:{folder}")
    assert emb.aligned and emb.text.dim == emb.image.dim == 16
    assert emb.text.backend is emb.image.backend
    assert emb.encode_images(_photos()).shape == (2, 16) and emb.encode_text(["red"]).shape == (1, 16)
    spec = emb.spec()
    assert spec["text"]["weights"] == spec["image"]["weights"] and spec["image"]["preprocess"]["size"] == 30


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(EncoderError, match="nothing is downloaded"):
        create_encoder(f"hf-clip:{tmp_path / 'nope'}")


def test_open_clip_format_loads_both_towers():
    try:
        import open_clip  # noqa: F401
    except ImportError:
        pytest.skip("open_clip not installed (it needs torchvision, which this environment cannot install)")
    clipmod.clear_loaded()  # pragma: no cover - runs only where open_clip is installed
    emb = load_clip_embedder("clip:RN50")  # architecture only: random weights, nothing downloaded
    t, i = emb.encode_text(["red dress"]), emb.encode_images(_photos())
    assert emb.aligned and t.shape[1] == i.shape[1] == emb.text.dim
    np.testing.assert_allclose(np.linalg.norm(i, axis=1), 1, atol=1e-5)
