"""Region search: crop boxes, candidate regions and multi-crop merging (issue 11, item 15)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from prodsearch.errors import QueryError
from prodsearch.index.types import Hits
from prodsearch.search.regions import Box, candidate_boxes, crop, merge_regions, multi_crop_search


def test_box_parse_and_pixels():
    assert Box.parse("0.1,0.2,0.5,1") == Box(0.1, 0.2, 0.5, 1.0) == Box.parse([0.1, 0.2, 0.5, 1])
    assert Box(0.25, 0.5, 0.75, 1.0).pixels(200, 100) == (50, 50, 150, 100)
    assert Box(0.0, 0.0, 0.001, 0.001).pixels(100, 100) == (0, 0, 1, 1)  # never empty
    for bad in ("1,2,3", [0.5, 0, 0.4, 1], "a,b,c,d", [0, 0, 1, 1.5]):
        with pytest.raises(QueryError, match="crop box"):
            Box.parse(bad)


def test_crop_takes_the_box():
    img = Image.new("RGB", (100, 50), (255, 255, 255))
    img.paste((255, 0, 0), (50, 0, 100, 50))
    part = crop(img, "0.5,0,1,1")
    assert part.size == (50, 50) and part.getpixel((10, 10)) == (255, 0, 0)


def test_candidate_boxes_tile_every_scale():
    boxes = candidate_boxes()
    assert len(boxes) == 1 + 9 + 25 and boxes[0] == Box(0, 0, 1, 1)
    for s in (0.5, 0.34):
        same = [b for b in boxes if abs((b.x1 - b.x0) - s) < 1e-9]
        grid = np.linspace(0.001, 0.999, 50)
        covered = all(any(b.x0 <= x <= b.x1 and b.y0 <= y <= b.y1 for b in same) for x in grid for y in grid)
        assert covered and all(b.x1 <= 1 + 1e-9 and b.y1 <= 1 + 1e-9 for b in same)


def test_merge_regions_hand_computed():
    a = Hits(np.array([1, 2, 3]), np.array([0.9, 0.5, 0.4], np.float32))  # median 0.5: margins .4, 0, -.1
    b = Hits(np.array([3, 4, 5]), np.array([0.8, 0.7, 0.2], np.float32))  # median 0.7: margins .1, 0, -.5
    got = merge_regions([a, b])
    assert got.iids.tolist() == [1, 3, 2, 4, 5]
    np.testing.assert_allclose(got.scores, [0.4, 0.1, 0.0, 0.0, -0.5], atol=1e-6)
    assert len(merge_regions([])) == 0


def test_multi_crop_search_equals_brute_force(tiny_engine, tiny_catalog):
    photos = tiny_catalog.parent / "images"
    scene = Image.new("RGB", (240, 120), (128, 128, 128))
    scene.paste(Image.open(photos / "p01.jpg").convert("RGB").resize((100, 100)), (10, 10))
    scene.paste(Image.open(photos / "p09.jpg").convert("RGB").resize((100, 100)), (130, 10))
    boxes = [Box(0, 0, 0.5, 1), Box(0.5, 0, 1, 1), Box(0, 0, 1, 1)]
    got = multi_crop_search(tiny_engine, scene, k=6, boxes=boxes, per_region=8)

    # brute force: every region against every product photo, median baseline of its top 8, best margin
    products = [p for p in tiny_engine.store.iter_products() if p.image_path]
    iids = np.asarray(tiny_engine.store.iid_of([p.id for p in products]), dtype=np.int64)
    vecs = tiny_engine.vectors["image"].get(iids)  # the indexed product-photo vectors
    best: dict[str, float] = {}
    for box in boxes:
        q = tiny_engine.embedder.encode_images([crop(scene, box)])[0]
        sims = vecs @ q
        top = np.argsort(-sims, kind="stable")[:8]
        base = float(np.median(sims[top]))
        for i in top:
            best[products[i].id] = max(best.get(products[i].id, -np.inf), float(sims[i]) - base)
    want = sorted(best.items(), key=lambda kv: -kv[1])[:6]
    assert [round(r.score, 4) for r in got] == [round(v, 4) for _, v in want]
    assert {r.id for r in got if r.score > want[-1][1] + 1e-4} <= {pid for pid, _ in want}
    assert [r.score for r in got] == sorted((r.score for r in got), reverse=True)
    assert got.signals == ["regions"]
