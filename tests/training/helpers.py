"""Tiny towers and a test factory: random-init, offline, fast."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from prodsearch.encoders.image import RICH_TAPS, EfficientNetLiteEncoder, ImagePreprocessor, build_backbone
from prodsearch.training.model import ImageTower, TextTower
from prodsearch.training.towers import TowerFactory

WORDS = "red blue green yellow black white cotton denim linen leather shirt shoes boots bag dress jacket tshirt wallet backpack heels running canvas rain summer high men women unisex shoe".split()


def tiny_bert_dir(root: Path) -> Path:
    """A 2-layer, 32-wide BERT with a word-level vocab, saved as a HF folder."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    root.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (root / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizerFast(vocab_file=str(root / "vocab.txt"), do_lower_case=True)
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
    )
    BertModel(cfg).save_pretrained(root)
    tok.save_pretrained(root)
    return root


class TinyCNN(nn.Module):
    """(N, 3, S, S) -> (N, 16): stem, 3 blocks in a ModuleList, head; BatchNorm everywhere."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()) for _ in range(3)
        )
        self.head = nn.Sequential(
            nn.Conv2d(8, 16, 1), nn.BatchNorm2d(16), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )

    def forward(self, x):
        x = self.stem(x)
        for b in self.blocks:
            x = b(x)
        return self.head(x)


def preprocess(img, size: int = 16):
    img = img.convert("RGB").resize((size, size))
    t = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).float().view(size, size, 3)
    return ((t - 127.0) / 128.0).permute(2, 0, 1)


class TinyFactory(TowerFactory):
    """Fake encoders (tests/fakes.py) for frozen sides; tiny BERT / TinyCNN for live sides."""

    def __init__(self, bert_dir: Path):
        self.bert_dir = bert_dir

    def text_encoder(self, cfg):
        from fakes import FakeTextEncoder

        return FakeTextEncoder()

    def image_encoder(self, cfg):
        from fakes import FakeImageEncoder

        return FakeImageEncoder()

    def text_tower(self, cfg):
        return TextTower.from_path(str(self.bert_dir))

    def image_tower(self, cfg):
        torch.manual_seed(0)
        return ImageTower(TinyCNN(), 16), preprocess, 16


class SplittableFactory(TinyFactory):
    """Fake frozen text encoder; a real (random-initialised) EfficientNet-Lite0 image tower, and the
    encoder of its rich features for the frozen side."""

    def _backbone(self):
        torch.manual_seed(0)
        return build_backbone("lite0", image_size=32, pretrained=False, taps=RICH_TAPS)

    def image_tower(self, cfg):
        bb = self._backbone()
        return ImageTower(bb, bb.dim), ImagePreprocessor(32), 32

    def image_encoder(self, cfg):
        return EfficientNetLiteEncoder(backbone=self._backbone(), image_size=32, features="rich", cache=False)


COLOURS = ["red", "green", "blue", "yellow", "black", "white"]
KINDS = ["shirt", "shoes", "bag", "dress", "jacket"]


def synthetic_products(root: Path, n: int = 48):
    """Products whose title names the photo's colour; some titles and one photo shared on purpose."""
    from PIL import Image, ImageDraw

    from fakes import COLOURS as RGB
    from prodsearch.catalog.schema import Product

    root.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        colour, kind = COLOURS[i % 6], KINDS[(i // 6) % 5]
        path = root / f"{i}.png"
        img = Image.new("RGB", (24, 32), (255, 255, 255))
        ImageDraw.Draw(img).rectangle([2 + i % 4, 2 + i % 5, 21, 29], fill=RGB[colour])
        img.save(path)
        title = f"{colour} {kind}" if i % 7 else f"{colour} cotton {kind}"
        out.append(
            Product(
                id=f"p{i:03d}",
                title=title,
                attributes={
                    "colour": colour,
                    "kind": kind,
                    "gender": "men" if i % 2 else "women",
                    "year": "2012",
                },
                image_path=str(path),
                image_hash=f"h{i}" if i != 5 else "h4",
            )
        )
    return out


#: A quick training config for the tiny towers (two epochs, 8-d space).
FAST = dict(
    epochs=2,
    batch_size=8,
    embed_dim=8,
    head_hidden=32,
    lr=1e-2,
    warmup_fraction=0.0,
    patience=0,
    val_fraction=0.2,
    test_fraction=0.2,
)
