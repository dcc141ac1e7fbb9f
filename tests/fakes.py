"""Deterministic toy encoders for tests: fast, no weights, with answers known by construction.

Colour words in text and the dominant colour of an image map to the same dimension, so the
pair is an *aligned* embedder: "red" finds red photos. Other words are hashed into the rest of
the space so that text-to-text similarity also works.
"""

from __future__ import annotations

import csv
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from prodsearch.catalog.images import load_image
from prodsearch.encoders.base import Embedder, Encoder, l2_normalize, register_encoder

COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 180, 40),
    "blue": (30, 60, 220),
    "yellow": (240, 220, 30),
    "black": (10, 10, 10),
    "white": (250, 250, 250),
}
NAMES = list(COLOURS)
DIM = 16


def _word_dim(word: str) -> int:
    if word in COLOURS:
        return NAMES.index(word)
    return len(NAMES) + zlib.crc32(word.encode()) % (DIM - len(NAMES))


class FakeTextEncoder(Encoder):
    name = "fake-text"
    modality = "text"
    dim = DIM

    def __init__(self) -> None:
        self.calls = 0

    def encode(self, items: Sequence[Any], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        self.calls += 1
        out = np.zeros((len(items), DIM), np.float32)
        for i, text in enumerate(items):
            for w in str(text).lower().replace(",", " ").split():
                out[i, _word_dim(w)] += 3.0 if w in COLOURS else 1.0
            if not out[i].any():
                out[i, -1] = 1.0
        return l2_normalize(out)

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "dim": DIM, "version": 1}


_BACKGROUNDS = [(255, 255, 255), (235, 235, 235)]


def dominant_colour(img: Image.Image) -> str:
    """The named colour covering most non-background pixels (each pixel votes for its nearest anchor)."""
    px = np.asarray(img.convert("RGB"), dtype=np.float32).reshape(-1, 3)
    anchors = np.asarray([COLOURS[n] for n in NAMES] + _BACKGROUNDS, dtype=np.float32)
    nearest = ((px[:, None, :] - anchors[None]) ** 2).sum(-1).argmin(1)
    votes = np.bincount(nearest, minlength=len(anchors))[: len(NAMES)]
    return NAMES[int(votes.argmax())]


class FakeImageEncoder(Encoder):
    name = "fake-image"
    modality = "image"
    dim = DIM

    def __init__(self) -> None:
        self.calls = 0

    def encode(self, items: Sequence[Any], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        self.calls += 1
        out = np.zeros((len(items), DIM), np.float32)
        for i, item in enumerate(items):
            img = item if isinstance(item, Image.Image) else load_image(item)
            out[i, NAMES.index(dominant_colour(img))] = 1.0
            # a weak, image-specific signature so that distinct photos are distinct vectors
            small = np.asarray(img.convert("L").resize((4, 4)), dtype=np.float32).ravel() / 255.0
            out[i, len(NAMES) :] = 0.05 * small[: DIM - len(NAMES)]
        return l2_normalize(out)

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "dim": DIM, "version": 1}


register_encoder("fake-text", "text", "test-only toy text encoder")(FakeTextEncoder)
register_encoder("fake-image", "image", "test-only toy image encoder")(FakeImageEncoder)


def fake_embedder() -> Embedder:
    return Embedder(FakeTextEncoder(), FakeImageEncoder(), aligned=True, name="fake")


# (id, title, description, colour, category, gender, price)
TINY_PRODUCTS = [
    ("p01", "Red cotton shirt", "casual summer shirt", "red", "shirt", "men", "19.99"),
    ("p02", "Blue denim shirt", "classic denim", "blue", "shirt", "men", "29.50"),
    ("p03", "Green linen shirt", "light linen", "green", "shirt", "women", "35.00"),
    ("p04", "Black leather boots", "winter boots", "black", "shoe", "men", "89.00"),
    ("p05", "White running shoes", "lightweight sneakers", "white", "shoe", "women", "59.00"),
    ("p06", "Red high heels", "party shoes", "red", "shoe", "women", "75.00"),
    ("p07", "Yellow canvas bag", "tote bag for the beach", "yellow", "bag", "women", "15.00"),
    ("p08", "Black leather wallet", "slim wallet", "black", "bag", "men", "25.00"),
    ("p09", "Blue backpack", "school backpack", "blue", "bag", "unisex", "40.00"),
    ("p10", "Green rain jacket", "waterproof jacket", "green", "jacket", "unisex", "99.00"),
    ("p11", "Yellow summer dress", "floral dress", "yellow", "dress", "women", "45.00"),
    ("p12", "White cotton tshirt", "basic tee", "white", "shirt", "unisex", "9.99"),
]
COLUMNS = ["id", "title", "description", "colour", "category", "gender", "price", "image"]


def make_photo(path: Path, colour: str, shape: int = 0, size: tuple[int, int] = (40, 52)) -> Path:
    """A product-like photo: white background, a coloured object whose shape varies with ``shape``."""
    img = Image.new("RGB", size, (255, 255, 255) if colour != "white" else (235, 235, 235))
    d = ImageDraw.Draw(img)
    w, h = size
    box = [4 + shape % 3, 4 + shape % 5, w - 4, h - 4]
    if shape % 2:
        d.ellipse(box, fill=COLOURS[colour])
    else:
        d.rectangle(box, fill=COLOURS[colour])
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, quality=95)
    return path


def write_tiny_catalog(root: Path, rows=TINY_PRODUCTS) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "catalog.csv", "w", newline="", encoding="utf-8") as fh:
        wr = csv.writer(fh)
        wr.writerow(COLUMNS)
        for i, r in enumerate(rows):
            make_photo(root / "images" / f"{r[0]}.jpg", r[3], shape=i)
            wr.writerow([*r, f"images/{r[0]}.jpg"])
    return root / "catalog.csv"


def write_colour_catalog(root: Path, n: int = 260) -> Path:
    """``n`` products (colour x 5 kinds x 2 genders, photos of varied size): enough held-out
    products for fusion calibration's 20 validation queries per kind. Columns:
    id,title,colour,category,gender,image."""
    kinds = ["shirt", "shoe", "bag", "dress", "jacket"]
    names = list(COLOURS)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "catalog.csv", "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["id", "title", "colour", "category", "gender", "image"])
        for i in range(n):
            colour, kind = names[i % len(names)], kinds[(i // 7) % len(kinds)]
            make_photo(root / "images" / f"q{i}.jpg", colour, shape=i, size=(36 + i % 23, 52 + i % 7))
            gender = "men" if i % 3 else "women"
            wr.writerow([f"q{i}", f"{colour} {kind} model {i}", colour, kind, gender, f"images/q{i}.jpg"])
    return root / "catalog.csv"
