"""Fixtures for the evaluation tests: a tiny catalog with solid-colour PIL photos and a fake aligned
embedder with one-hot embeddings, so retrieval metrics are exact, hand-computable numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from prodsearch.catalog.schema import Product
from prodsearch.encoders.base import Embedder, Encoder
from prodsearch.evaluation.systems import EmbeddedCorpus

# one distinct photo colour per slot; slot i = products' photo i
PALETTE = [
    (220, 20, 20),
    (20, 200, 20),
    (20, 20, 220),
    (230, 230, 30),
    (30, 230, 230),
    (230, 30, 230),
    (120, 60, 10),
    (250, 250, 250),
]

# (id, title, type, colour, gender, photo slot)
TINY = [
    ("p0", "Red Shirt A", "Shirt", "Red", "Men", 0),
    ("p1", "Red Shirt A", "Shirt", "Red", "Men", 1),  # same title as p0, another photo
    ("p2", "Blue Shirt B", "Shirt", "Blue", "Women", 2),
    ("p3", "Blue Jeans C", "Jeans", "Blue", "Men", 3),
    ("p4", "Black Shoe D", "Shoe", "Black", "Women", 4),
    ("p5", "White Shoe E", "Shoe", "White", "Men", 5),
    ("p6", "Green Bag F", "Bag", "Green", "Women", 6),
    ("p7", "Red Bag G", "Bag", "Red", "Women", 7),
]
DIM = 16  # slots 0..7 photos, 8 = "unknown text"


class OneHotText(Encoder):
    """Text -> one-hot: a known string -> its slot, anything else -> slot 8 (matches no photo)."""

    name, modality, dim = "onehot-text", "text", DIM

    def __init__(self, slots: dict[str, int]):
        self.slots = slots

    def encode(self, items, *, batch_size=64, progress=False):
        out = np.zeros((len(items), DIM), np.float32)
        for i, t in enumerate(items):
            out[i, self.slots.get(t.strip(), 8)] = 1.0
        return out

    def spec(self):
        return {"name": self.name, "dim": DIM}


class OneHotImage(Encoder):
    """Photo -> one-hot at the palette colour nearest to its mean colour (survives crop/flip/JPEG)."""

    name, modality, dim = "onehot-image", "image", DIM

    def encode(self, items, *, batch_size=64, progress=False):
        out = np.zeros((len(items), DIM), np.float32)
        for i, it in enumerate(items):
            img = it if isinstance(it, Image.Image) else Image.open(it)
            mean = np.asarray(img.convert("RGB"), dtype=np.float64).reshape(-1, 3).mean(axis=0)
            slot = int(np.argmin([np.sum((mean - np.asarray(c)) ** 2) for c in PALETTE]))
            out[i, slot] = 1.0
        return out

    def spec(self):
        return {"name": self.name, "dim": DIM}


def make_products(root: Path, rows=TINY) -> list[Product]:
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for pid, title, typ, colour, gender, slot in rows:
        path = root / f"{pid}.png"
        Image.new("RGB", (40, 48), PALETTE[slot]).save(path)
        out.append(
            Product(
                id=pid,
                title=title,
                attributes={"type": typ, "colour": colour, "gender": gender},
                image_path=str(path),
                image_hash=f"h{slot}",
            )
        )
    return out


#: Deliberate mistakes of the fake text tower: "Green Bag F" lands on p7's photo; the prompt "Shirt" on p0's.
OVERRIDES = {"Green Bag F": 7, "Shirt": 0}


def onehot_embedder(products: list[Product], aligned: bool = True) -> Embedder:
    """Titles map to the slot of the first product's photo with that title (product text = title),
    except for :data:`OVERRIDES`; any other text maps to slot 8, which no photo has."""
    slots: dict[str, int] = {}
    for p, row in zip(products, TINY, strict=False):
        slots.setdefault(p.title, row[5])
    slots.update(OVERRIDES)
    return Embedder(OneHotText(slots), OneHotImage(), aligned=aligned, name="onehot")


def embed(name: str, embedder: Embedder, products: list[Product]) -> EmbeddedCorpus:
    pos = np.arange(len(products), dtype=np.int64)
    vectors = {
        "text": (pos, embedder.encode_text([p.full_text() for p in products])),
        "image": (pos, embedder.encode_images([p.image_path for p in products])),
    }
    return EmbeddedCorpus(name, embedder, vectors)
