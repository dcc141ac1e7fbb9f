"""A catalog of another kind built from the shared fashion catalog, for checking a recipe on photos
and columns it was not tuned on: each product photo upscaled 4x and placed at a random spot on a
384 px background (solid, gradient, noise or split, as in collage_bench.py), and the columns
renamed (sku, name, picture, audience, group, kind, colour, occasion).

    python bench/variant_catalog.py --out DIR [--products 10000] [--seed 0]
    python bench/recipe_bench.py --catalog DIR/catalog.csv --recipes default,heads

Writes ``DIR/catalog.csv`` and ``DIR/photos/*.jpg`` (nothing under ../shared is modified).
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from collage_bench import SIDE, background  # noqa: E402

SOURCE = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "fashion-product-images-small"
COLUMNS = {  # source column -> the variant's name
    "id": "sku",
    "productDisplayName": "name",
    "gender": "audience",
    "masterCategory": "group",
    "articleType": "kind",
    "baseColour": "colour",
    "usage": "occasion",
}
SCALE = 4


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--products", type=int, default=10000, help="the first N products of the source")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    photos = args.out / "photos"
    photos.mkdir(parents=True, exist_ok=True)
    with open(SOURCE / "styles.csv", newline="") as fh:
        rows = [r for r, _ in zip(csv.DictReader(fh), range(args.products), strict=False)]
    out_rows = []
    for r in rows:
        src = SOURCE / r["image"]
        if not src.is_file():
            continue
        with Image.open(src) as im:
            photo = im.convert("RGB")
        photo = photo.resize((photo.width * SCALE, photo.height * SCALE), Image.BICUBIC)
        if max(photo.size) > SIDE:
            photo.thumbnail((SIDE, SIDE), Image.BICUBIC)
        canvas = background(rng)
        x, y = rng.randint(0, SIDE - photo.width), rng.randint(0, SIDE - photo.height)
        canvas.paste(photo, (x, y))
        name = f"{r['id']}.jpg"
        canvas.save(photos / name, quality=90)
        out_rows.append({**{new: r[old] for old, new in COLUMNS.items()}, "picture": f"photos/{name}"})
    with open(args.out / "catalog.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=[*COLUMNS.values(), "picture"])
        w.writeheader()
        w.writerows(out_rows)
    print(f"{len(out_rows)} products -> {args.out / 'catalog.csv'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
