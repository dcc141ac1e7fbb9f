"""Scene photos ("shop the look"): collages of 4-9 product photos from the index's own catalog,
placed at random scales on varied backgrounds; relevant = the placed products (issue 11, item 15).

    python bench/collage_bench.py --index INDEX [--collages 100] [--record]

Systems: the whole collage as one query photo; automatic multi-crop (search/regions.py: 35 regions
at three scales, merged by each region's margin over its baseline); and the true boxes of the placed
photos merged the same way (the upper bound of region search with a perfect detector). Reported:
hit@10 (a placed product in the top 10) and recall@50 (share of the placed products in the top 50).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import record, table  # noqa: E402

SIDE = 384


def background(rng: random.Random) -> Image.Image:
    kind = rng.choice(["solid", "gradient", "noise", "split"])
    c1 = tuple(rng.randint(0, 255) for _ in range(3))
    c2 = tuple(rng.randint(0, 255) for _ in range(3))
    if kind == "solid":
        return Image.new("RGB", (SIDE, SIDE), c1)
    if kind == "gradient":
        t = np.linspace(0, 1, SIDE)[:, None, None]
        arr = (1 - t) * np.array(c1) + t * np.array(c2)
        return Image.fromarray(np.repeat(arr, SIDE, axis=1).astype(np.uint8))
    if kind == "noise":
        arr = np.random.default_rng(rng.randint(0, 2**31)).integers(
            0, 255, (SIDE // 8, SIDE // 8, 3), dtype=np.uint8
        )
        return Image.fromarray(arr).resize((SIDE, SIDE), Image.BILINEAR).filter(ImageFilter.GaussianBlur(2))
    img = Image.new("RGB", (SIDE, SIDE), c1)
    ImageDraw.Draw(img).rectangle([0, SIDE * 2 // 3, SIDE, SIDE], fill=c2)  # a wall and a floor
    return img


def overlap(a, b) -> float:
    x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    return inter / min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))


def make_collage(products, rng: random.Random):
    """(collage, [(product id, box fractions)]) with 4-9 photos, overlapping each other by < 10%."""
    canvas = background(rng)
    placed: list[tuple[str, tuple[int, int, int, int]]] = []
    for p in rng.sample(products, rng.randint(4, 9)):
        photo = Image.open(p.image_path).convert("RGB")
        scale = rng.uniform(0.9, 2.0)
        w, h = max(8, int(photo.width * scale)), max(8, int(photo.height * scale))
        for _ in range(60):
            x, y = rng.randint(0, SIDE - w), rng.randint(0, SIDE - h)
            box = (x, y, x + w, y + h)
            if all(overlap(box, b) < 0.1 for _, b in placed):
                canvas.paste(photo.resize((w, h), Image.BICUBIC), (x, y))
                placed.append((p.id, box))
                break
    return canvas, [(pid, tuple(v / SIDE for v in b)) for pid, b in placed]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--collages", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save", type=Path, help="also save the collages (PNG) to this folder")
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()

    from prodsearch.search.engine import Engine
    from prodsearch.search.regions import Box, candidate_boxes, multi_crop_search

    rng = random.Random(args.seed)
    with Engine.open(args.index, lazy_model=False) as engine:
        products = [p for p in engine.store.iter_products() if p.image_path]
        scenes = [make_collage(products, rng) for _ in range(args.collages)]
        if args.save:
            args.save.mkdir(parents=True, exist_ok=True)
            for i, (img, _) in enumerate(scenes):
                img.save(args.save / f"collage-{i:03d}.png")
        systems = {
            "whole photo": lambda img, boxes: engine.search(image=img, mode="image", k=50),
            f"multi-crop ({len(candidate_boxes())} regions)": lambda img, boxes: multi_crop_search(
                engine, img, k=50
            ),
            "true boxes": lambda img, boxes: multi_crop_search(
                engine, img, k=50, boxes=[Box(*b) for b in boxes]
            ),
        }
        rows = []
        for name, fn in systems.items():
            hit10, rec50, secs, first = [], [], [], {}
            for img, placed in scenes:
                ids = {pid for pid, _ in placed}
                t = time.perf_counter()
                got = [r.id for r in fn(img, [b for _, b in placed])]
                secs.append(time.perf_counter() - t)
                hit10.append(bool(ids & set(got[:10])))
                rec50.append(len(ids & set(got[:50])) / len(ids))
                if got:
                    first[got[0]] = first.get(got[0], 0) + 1
            top_share = max(first.values()) / len(scenes) if first else 0.0
            rows.append([
                name, str(len(scenes)), f"{np.mean(hit10):.3f}", f"{np.mean(rec50):.3f}", f"{top_share:.2f}",
                f"{np.median(secs) * 1000:.0f}",
            ])  # fmt: skip
        info = engine.info()
    n_placed = sum(len(p) for _, p in scenes)
    body = (
        f"Index: `{args.index}` ({info['products']} products, embedder {info['embedder']}); "
        f"{len(scenes)} collages of {SIDE}x{SIDE} px, {n_placed} placed photos (4-9 each, scale 0.9-2.0 of "
        f"the 60x80 originals) on solid / gradient / noise / wall-and-floor backgrounds, seed {args.seed}. "
        "'same first' = the largest share of collages that get one same product first.\n\n"
        + table(rows, ["query", "collages", "hit@10", "recall@50", "same first", "p50 ms"])
    )
    print(body)
    if args.record:
        record(
            "Scene photos: collage benchmark", "python bench/collage_bench.py " + " ".join(sys.argv[1:]), body
        )


if __name__ == "__main__":
    main()
