"""Seeded photo augmentations that turn a catalog photo into a shopper-like query photo.

Each query gets a crop, a random horizontal flip, a downscale and a JPEG re-compression, drawn
from its own ``numpy`` generator so a run is repeatable and queries can be made lazily in batches
(never all photos in memory at once). Colours are never altered: "same colour" is judged later.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

#: Bigger photos are shrunk to this longest side first (encoders resize to ~224 px anyway).
MAX_SIDE = 512


@dataclass(frozen=True)
class AugmentParams:
    crop: float = 0.85  # minimum kept share of each side
    flip_prob: float = 0.5
    min_scale: float = 0.5  # downscale factor range [min_scale, 1)
    jpeg_quality: tuple[int, int] = (30, 70)


def augment(
    img: Image.Image, rng: np.random.Generator, params: AugmentParams = AugmentParams()
) -> Image.Image:
    """Crop, maybe flip, downscale and JPEG re-compress ``img`` (RGB) with ``rng``; returns RGB."""
    img = img.convert("RGB")
    if max(img.size) > MAX_SIDE:
        img.thumbnail((MAX_SIDE, MAX_SIDE))
    w, h = img.size
    cw = max(1, round(w * rng.uniform(params.crop, 1.0)))
    ch = max(1, round(h * rng.uniform(params.crop, 1.0)))
    x0 = int(rng.integers(0, w - cw + 1))
    y0 = int(rng.integers(0, h - ch + 1))
    img = img.crop((x0, y0, x0 + cw, y0 + ch))
    if rng.random() < params.flip_prob:
        img = ImageOps.mirror(img)
    s = rng.uniform(params.min_scale, 1.0)
    img = img.resize((max(8, round(cw * s)), max(8, round(ch * s))), Image.BILINEAR)
    buf = io.BytesIO()
    img.save(
        buf, format="JPEG", quality=int(rng.integers(params.jpeg_quality[0], params.jpeg_quality[1] + 1))
    )
    buf.seek(0)
    return Image.open(buf).convert("RGB")


class AugmentedPhotos(Sequence):
    """Lazy sequence of augmented query photos: item ``i`` loads ``paths[i]`` and augments it with
    a generator seeded by ``(seed, i)``, so item ``i`` is the same image however it is batched."""

    def __init__(self, paths: Sequence[str], seed: int, params: AugmentParams = AugmentParams()):
        self.paths = list(paths)
        self.seed = seed
        self.params = params

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        from prodsearch.catalog.images import load_image

        rng = np.random.default_rng([self.seed, i])
        return augment(load_image(self.paths[i]), rng, self.params)
