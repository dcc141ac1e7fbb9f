"""Safe image loading: size caps, decompression-bomb guard, truncated-file detection, pad-to-square."""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from pathlib import Path

from PIL import Image, ImageOps

from prodsearch.errors import ImageError

#: Default pixel cap (w*h). Pillow's own bomb guard is ~89M px; product photos never need that.
DEFAULT_MAX_PIXELS = 40_000_000
#: Default cap on the file size of an image we will read (bytes).
DEFAULT_MAX_BYTES = 50 * 1024 * 1024


def _open_checked(
    src: str | os.PathLike[str] | bytes, max_pixels: int, max_bytes: int, name: str, reduce: bool = False
) -> Image.Image:
    try:
        if isinstance(src, (bytes, bytearray)):
            if len(src) > max_bytes:
                raise ImageError(f"{name}: {len(src)} bytes exceeds the {max_bytes}-byte cap")
            fh = io.BytesIO(src)
        else:
            path = Path(src)
            if not path.is_file():
                raise ImageError(f"{name}: file not found: {path}")
            size = path.stat().st_size
            if size > max_bytes:
                raise ImageError(f"{name}: {size} bytes exceeds the {max_bytes}-byte cap")
            fh = io.BytesIO(path.read_bytes())
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(fh)
            w, h = img.size
            if w * h > max_pixels:
                raise ImageError(f"{name}: {w}x{h} = {w * h} pixels exceeds the {max_pixels}-pixel cap")
            if reduce:
                # JPEG only: decode at 1/8 scale. The whole entropy-coded stream is still read, so
                # truncation is still detected, at a fraction of the cost of a full decode.
                img.draft(img.mode, (max(1, w // 8), max(1, h // 8)))
            img.load()  # forces a full decode; truncated files raise OSError here
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageError(f"{name}: decompression bomb refused ({err})") from err
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"{name}: cannot decode image ({err.__class__.__name__}: {err})") from err
    return img


def load_image(
    src: str | os.PathLike[str] | bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    name: str | None = None,
) -> Image.Image:
    """Open, fully decode and return an RGB image; raise :class:`ImageError` naming ``name`` otherwise.

    EXIF orientation is applied; palette/alpha images are composited on white (product photos
    with transparent background should look like they do on a shop page).
    """
    label = name or (str(src) if not isinstance(src, (bytes, bytearray)) else "image upload")
    img = _open_checked(src, max_pixels, max_bytes, label)
    img = ImageOps.exif_transpose(img)
    if img.mode in ("RGBA", "LA", "P", "PA"):
        img = img.convert("RGBA")
        bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, img)
    return img.convert("RGB")


def check_image(
    src: str | os.PathLike[str] | bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    name: str | None = None,
) -> None:
    """Validate an image as :func:`load_image` would (caps, bomb guard, truncation) without keeping it.

    Cheaper than ``load_image``: JPEGs are decoded at reduced scale and nothing is converted.
    Raises :class:`ImageError` naming ``name`` when the image would be refused.
    """
    label = name or (str(src) if not isinstance(src, (bytes, bytearray)) else "image upload")
    _open_checked(src, max_pixels, max_bytes, label, reduce=True).close()


def pad_to_square(img: Image.Image, fill: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Pad the shorter side with ``fill`` so the whole product stays in frame (no crop)."""
    w, h = img.size
    if w == h:
        return img
    side = max(w, h)
    canvas = Image.new("RGB", (side, side), fill)
    canvas.paste(img, ((side - w) // 2, (side - h) // 2))
    return canvas


def file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def bytes_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
