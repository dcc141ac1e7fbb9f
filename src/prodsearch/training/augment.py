"""Image augmentation that keeps colour meaning (a "navy blue shirt" must stay navy blue).

Random crop (keeping most of the object), horizontal flip, small rotation/translation, mild
brightness and contrast. Never hue or saturation shifts, never grayscale. Pure PIL (no torchvision).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from PIL import Image, ImageEnhance


@dataclass
class ColourSafeAugment:
    """``PIL.Image -> PIL.Image``; deterministic given the ``random.Random`` passed to ``__call__``."""

    min_crop: float = 0.8  # fraction of each side kept
    flip_prob: float = 0.5
    max_rotate: float = 8.0  # degrees
    max_translate: float = 0.05  # fraction of size
    brightness: float = 0.1  # factor in [1 - b, 1 + b]
    contrast: float = 0.1

    def __call__(self, img: Image.Image, rng: random.Random) -> Image.Image:
        img = img.convert("RGB")
        w, h = img.size
        fw, fh = rng.uniform(self.min_crop, 1.0), rng.uniform(self.min_crop, 1.0)
        cw, ch = max(1, round(w * fw)), max(1, round(h * fh))
        x0, y0 = rng.randint(0, w - cw), rng.randint(0, h - ch)
        img = img.crop((x0, y0, x0 + cw, y0 + ch))
        if rng.random() < self.flip_prob:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        angle = rng.uniform(-self.max_rotate, self.max_rotate)
        tx, ty = (rng.uniform(-self.max_translate, self.max_translate) * s for s in img.size)
        # white fill: catalog photos are shot on white, padding elsewhere is white too
        img = img.rotate(
            angle, resample=Image.Resampling.BILINEAR, translate=(tx, ty), fillcolor=(255, 255, 255)
        )
        img = ImageEnhance.Brightness(img).enhance(rng.uniform(1 - self.brightness, 1 + self.brightness))
        img = ImageEnhance.Contrast(img).enhance(rng.uniform(1 - self.contrast, 1 + self.contrast))
        return img
