"""A toy shop whose answers are known by construction, and a trained index over it.

Titles name the product type and a number but never the colour; the colour is in an attribute and
in the photo only. So a text query "red shirt" finds red shirts through a trained model that has
learnt colour words -> photo colours (the "joint" space), not through words: a model trained on
the catalog's own pairs helps, one trained on shuffled pairs cannot.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

from fakes import make_photo

COLOURS = ["red", "green", "blue", "yellow", "black", "white"]
KINDS = ["shirt", "shoe", "bag", "dress", "jacket"]
COLUMNS = ["id", "title", "colour", "category", "gender", "image"]
#: Small and fast: fake frozen encoders, trained heads only.
TRAIN_CFG = {
    "epochs": 6,
    "batch_size": 16,
    "text_tower": "fake-text",
    "image_tower": "fake-image",
    "val_fraction": 0.25,
    "test_fraction": 0.25,
    "patience": 0,
    "attribute_min_count": 2,
    # the promotion tests' better / worse candidates were tuned with linear attribute classifiers;
    # with random fake-encoder features for the value names the text classifier trains differently
    "attribute_classifier": "linear",
    "threads": 1,
}


def rows(start: int, stop: int) -> list[list[str]]:
    out = []
    for i in range(start, stop):
        colour, kind = COLOURS[i % 6], KINDS[(i // 6) % 5]
        out.append([f"p{i:04d}", f"item {i}", colour, kind, ["men", "women"][(i // 30) % 2]])
    return out


def write_shop(root: Path, n: int, *, shuffle_photos: bool = False, name: str = "catalog.csv") -> Path:
    """A CSV catalog of products 0..n-1 with photos; ``shuffle_photos`` pairs rows with other rows'
    photos (a model trained on it learns nothing true)."""
    root.mkdir(parents=True, exist_ok=True)
    data = rows(0, n)
    photos = []
    for i, r in enumerate(data):
        path = root / "images" / f"{r[0]}.jpg"
        if not path.exists():
            make_photo(path, r[2], shape=i, size=(40 + i % 13, 52 + i % 11))  # no two alike
        photos.append(f"images/{r[0]}.jpg")
    if shuffle_photos:
        random.Random(0).shuffle(photos)
    with open(root / name, "w", newline="", encoding="utf-8") as fh:
        wr = csv.writer(fh)
        wr.writerow(COLUMNS)
        for r, photo in zip(data, photos, strict=True):
            wr.writerow([*r, photo])
    return root / name


def build_trained_index(out: Path, catalog: Path, run: Path) -> Path:
    from prodsearch.search.builder import build_index
    from prodsearch.search.calibration import calibrate
    from prodsearch.search.engine import Engine
    from prodsearch.search.recipe import EmbedderRecipe

    build_index(catalog, out, recipe=EmbedderRecipe(model=str(run)))
    with Engine.open(out) as engine:
        calibrate(engine)
    return out
