"""Helpers for the catalog tests: tiny catalogs with real (PIL-made) photos and one bad row of each kind."""

from __future__ import annotations

import csv
import json
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

COLUMNS = ["id", "title", "description", "colour", "image"]


def make_jpeg(
    path: Path, colour: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (32, 40)
) -> Path:
    """A small JPEG with noise, so that half its bytes cannot decode into a full image."""
    rng = np.random.default_rng(sum(colour) + size[0])
    arr = np.clip(np.array(colour) + rng.integers(-40, 40, (size[1], size[0], 3)), 0, 255).astype("uint8")
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, "JPEG", quality=90)
    return path


def make_png_claiming(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb's header)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    idat = zlib.compress(b"\x00" * 64)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


#: expected outcome per 1-based data row of :func:`bad_rows`: None = accepted, else the problem kind
EXPECTED = {
    1: None,
    2: "missing id",
    3: "duplicate id",
    4: "empty title",
    5: "image file not found",
    6: "undecodable image",
    7: "truncated image",
    8: "image too large",
    9: "image path escapes the catalog folder",
    10: "image path escapes the catalog folder",
    11: "image path escapes the catalog folder",
    12: None,
    13: None,
    14: "empty image path",
    15: None,
}
ACCEPTED_IDS = ["g1", "n1", "g2", "w1"]


def bad_rows(root: Path) -> list[dict[str, str]]:
    """Rows of a catalog in folder ``root`` (images written there); see :data:`EXPECTED`."""
    images = root / "images"
    make_jpeg(images / "g1.jpg", (200, 30, 30))
    make_jpeg(images / "g2.jpg", (30, 30, 200))
    make_jpeg(images / "n1.jpg", (30, 200, 30))
    make_jpeg(images / "w1.jpg", (90, 90, 90))
    (images / "corrupt.jpg").write_bytes(
        np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    )
    real = make_jpeg(images / "big.jpg", (120, 60, 200), size=(96, 96)).read_bytes()
    (images / "trunc.jpg").write_bytes(real[: len(real) // 2])
    make_png_claiming(images / "bomb.png", 20_000, 20_000)
    outside = make_jpeg(root.parent / "outside.jpg", (1, 2, 3))  # a real image: refused for where it is
    (images / "link.jpg").symlink_to(outside)
    return [
        {
            "id": "g1",
            "title": "Red shirt",
            "description": "cotton",
            "colour": "red",
            "image": "images/g1.jpg",
        },
        {"id": "", "title": "No id", "description": "", "colour": "red", "image": "images/g1.jpg"},
        {"id": "g1", "title": "Duplicate", "description": "", "colour": "red", "image": "images/g1.jpg"},
        {"id": "e1", "title": "   ", "description": "", "colour": "red", "image": "images/g1.jpg"},
        {
            "id": "m1",
            "title": "Missing photo",
            "description": "",
            "colour": "red",
            "image": "images/nope.jpg",
        },
        {
            "id": "c1",
            "title": "Corrupt photo",
            "description": "",
            "colour": "red",
            "image": "images/corrupt.jpg",
        },
        {
            "id": "t1",
            "title": "Truncated photo",
            "description": "",
            "colour": "red",
            "image": "images/trunc.jpg",
        },
        {"id": "b1", "title": "Bomb", "description": "", "colour": "red", "image": "images/bomb.png"},
        {"id": "x1", "title": "Escape up", "description": "", "colour": "red", "image": "../outside.jpg"},
        {"id": "x2", "title": "Escape abs", "description": "", "colour": "red", "image": str(outside)},
        {"id": "x3", "title": "Escape link", "description": "", "colour": "red", "image": "images/link.jpg"},
        {"id": "n1", "title": "NA", "description": "NA", "colour": "NA", "image": "images/n1.jpg"},
        {
            "id": "g2",
            "title": "Blue shirt",
            "description": "",
            "colour": "blue",
            "image": "images/../images/g2.jpg",
        },
        {"id": "e2", "title": "No photo path", "description": "", "colour": "red", "image": ""},
        {
            "id": "w1",
            "title": "  Grey  jeans \t",
            "description": "",
            "colour": "grey",
            "image": "images/w1.jpg",
        },
    ]


def write_csv(
    path: Path, rows: list[dict[str, str]], columns=COLUMNS, delimiter: str = ",", encoding="utf-8"
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding=encoding) as fh:
        wr = csv.DictWriter(fh, fieldnames=columns, delimiter=delimiter)
        wr.writeheader()
        wr.writerows(rows)
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_parquet(path: Path, rows: list[dict]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    return path
