"""Region search on a query photo: a crop box, or automatic multi-crop for scene photos (issue 11, item 15).

A room or outfit photo holds several products; its whole-photo vector matches none of them well (and
the same few scene-like product photos come back for every scene). Two remedies, neither needing a
detection model:

* :func:`crop` - the shopper draws a box; the box is searched instead of the photo;
* :func:`multi_crop_search` - candidate regions at several scales (:func:`candidate_boxes`: the
  whole photo, overlapping halves, thirds), each searched against the product photos, results
  merged. A region that shows a product has one clearly nearest product photo; a region of
  background or of parts of several products does not. So each region's similarities are measured
  against that region's own baseline (the median similarity of its top ``per_region`` results) and
  a product's score is its best margin over any region: products that stand out in some region
  come first, whichever region it is.

Boxes are ``(x0, y0, x1, y1)`` fractions of the photo's width and height.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from prodsearch.errors import QueryError
from prodsearch.index.types import Hits

#: Region sizes as fractions of the photo's sides; each scale tiles the photo with 50% overlap.
SCALES = (1.0, 0.5, 0.34)
#: Regions whose pixels barely vary (plain background) are not searched.
MIN_REGION_STD = 6.0


@dataclass(frozen=True)
class Box:
    """A region as fractions of the photo: ``0 <= x0 < x1 <= 1``, ``0 <= y0 < y1 <= 1``."""

    x0: float
    y0: float
    x1: float
    y1: float

    @classmethod
    def parse(cls, value: Any) -> Box:
        """From ``[x0, y0, x1, y1]`` or ``"x0,y0,x1,y1"``; raises :class:`QueryError` naming the problem."""
        parts = value.split(",") if isinstance(value, str) else value
        try:
            x0, y0, x1, y1 = (float(v) for v in parts)
        except (TypeError, ValueError):
            raise QueryError(
                f"crop box must be four numbers x0,y0,x1,y1 (fractions 0-1), got {value!r}"
            ) from None
        if not (0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0):
            raise QueryError(
                f"crop box {value!r} must satisfy 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1 (fractions of the photo)"
            )
        return cls(x0, y0, x1, y1)

    def pixels(self, width: int, height: int) -> tuple[int, int, int, int]:
        """The box in pixels of a ``width`` x ``height`` photo, at least 1 px each way."""
        left, top = int(round(self.x0 * width)), int(round(self.y0 * height))
        right = max(left + 1, int(round(self.x1 * width)))
        bottom = max(top + 1, int(round(self.y1 * height)))
        return left, top, min(right, width), min(bottom, height)


def crop(image: Image.Image, box: Box | Any) -> Image.Image:
    """The part of ``image`` inside ``box`` (a :class:`Box` or anything :meth:`Box.parse` takes)."""
    box = box if isinstance(box, Box) else Box.parse(box)
    return image.crop(box.pixels(*image.size))


def candidate_boxes(scales: Sequence[float] = SCALES) -> list[Box]:
    """Regions tiling the photo at each scale with 50% overlap: scale 1 is the whole photo, 0.5 gives
    3 x 3 overlapping halves, 0.34 gives 5 x 5 overlapping thirds (35 boxes by default)."""
    boxes: list[Box] = []
    for s in scales:
        if not 0.0 < s <= 1.0:
            raise QueryError(f"region scales must be in (0, 1], got {s}")
        if s >= 1.0:
            boxes.append(Box(0.0, 0.0, 1.0, 1.0))
            continue
        steps = int(np.ceil((1.0 - s) / (s / 2))) + 1
        starts = np.linspace(0.0, 1.0 - s, steps)
        boxes += [Box(float(x), float(y), float(x + s), float(y + s)) for y in starts for x in starts]
    return boxes


def merge_regions(per_region: Sequence[Hits]) -> Hits:
    """One ranking from per-region rankings: a product's score is its best margin over a region's
    baseline (the median of that region's scores), see the module doc."""
    best: dict[int, float] = {}
    for hits in per_region:
        scores = np.asarray(hits.scores, dtype=np.float64)
        if scores.size == 0:
            continue
        base = float(np.median(scores))
        for iid, s in zip(np.asarray(hits.iids).tolist(), scores.tolist(), strict=True):
            margin = s - base
            if margin > best.get(iid, -np.inf):
                best[iid] = margin
    if not best:
        return Hits.empty()
    iids = np.fromiter(best, dtype=np.int64, count=len(best))
    scores = np.fromiter(best.values(), dtype=np.float32, count=len(best))
    order = np.lexsort((iids, -scores))
    return Hits(iids[order], scores[order])


def region_rankings(
    engine: Any,
    image: Image.Image,
    boxes: Sequence[Box],
    *,
    per_region: int = 50,
    allowed: np.ndarray | None = None,
) -> list[Hits]:
    """Each box of ``image`` searched against the product photos (image vectors), in box order.

    Boxes of plain background (pixel standard deviation under :data:`MIN_REGION_STD`) are skipped.
    """
    if "image" not in engine.vectors:
        raise QueryError("this index has no image vectors; region search needs product photos")
    crops = []
    for box in boxes:
        region = crop(image, box)
        if float(np.asarray(region.convert("L"), dtype=np.float32).std()) >= MIN_REGION_STD:
            crops.append(region)
    if not crops:
        return []
    vecs = engine.embedder.encode_images(crops)
    return engine.vectors["image"].search(np.asarray(vecs, np.float32), per_region, allowed=allowed)


def multi_crop_search(
    engine: Any,
    image: Any,
    *,
    k: int = 10,
    offset: int = 0,
    filters: Any = None,
    explain: bool = False,
    boxes: Sequence[Box] | None = None,
    per_region: int = 50,
) -> Any:
    """Search a scene photo region by region (``boxes``, default :func:`candidate_boxes`) and merge.

    Returns the engine's :class:`~prodsearch.search.results.SearchResponse` (signal ``regions``).
    """
    from prodsearch.catalog.images import load_image

    if k < 1 or offset < 0:
        raise QueryError(f"k must be >= 1 and offset >= 0, got k={k}, offset={offset}")
    img = image if isinstance(image, Image.Image) else load_image(image, name="query image")
    timings: dict[str, float] = {}
    t = time.perf_counter()
    mask = engine._filter_mask(filters)
    allowed = engine._attr_iids[mask] if mask is not None else None
    timings["filter"] = time.perf_counter() - t
    t = time.perf_counter()
    regions = region_rankings(
        engine, img, list(boxes or candidate_boxes()), per_region=max(per_region, k + offset), allowed=allowed
    )
    timings["regions"] = time.perf_counter() - t
    merged = merge_regions(regions)
    from prodsearch.search.ranking import finish

    return finish(
        engine,
        {"regions": merged},
        {"regions": 1.0},
        "rrf",
        k,
        offset,
        None,
        timings,
        "image",
        explain,
        None,
        {},
    )
