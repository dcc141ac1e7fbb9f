"""Catalog versions and an index-state snapshot for the write-path tests.

Three catalogs share one photo folder, so a product that does not change keeps the same photo:
``v1`` (the tiny catalog), ``v1b`` (``v1`` without p02) and ``v2`` (``v1b`` with p01 retitled and
a new product p13).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from fakes import COLUMNS, TINY_PRODUCTS, make_photo

V1 = list(TINY_PRODUCTS)
V1B = [r for r in V1 if r[0] != "p02"]
V2 = [("p01", "Red cotton shirt slim fit", *V1[0][2:]) if r[0] == "p01" else r for r in V1B] + [
    ("p13", "Blue silk scarf", "soft scarf", "blue", "scarf", "women", "22.00")
]


def write_catalogs(root: Path) -> dict[str, Path]:
    """``{"v1": csv, "v1b": csv, "v2": csv}`` under ``root`` (photos in ``root/images``)."""
    root.mkdir(parents=True, exist_ok=True)
    for i, r in enumerate(V2 + V1):
        photo = root / "images" / f"{r[0]}.jpg"
        if not photo.exists():
            make_photo(photo, r[3], shape=i)
    out = {}
    for name, rows in (("v1", V1), ("v1b", V1B), ("v2", V2)):
        path = root / f"{name}.csv"
        with open(path, "w", newline="", encoding="utf-8") as fh:
            wr = csv.writer(fh)
            wr.writerow(COLUMNS)
            for r in rows:
                wr.writerow([*r, f"images/{r[0]}.jpg"])
        out[name] = path
    return out


def state(root: Path, embedder: Any) -> dict[str, Any]:
    """Everything a reader can observe, keyed by product id (iids differ between builds): the
    products, every vector kind's vectors, the lexical documents, and the ids the three agree on."""
    from prodsearch.search.engine import Engine

    engine = Engine.open(root, embedder=embedder)
    try:
        products = list(engine.store.iter_products())
        iids = engine.store.iid_of([p.id for p in products])
        pid = dict(zip(iids, (p.id for p in products), strict=True))
        vectors = {}
        for kind, be in engine.vectors.items():
            have = be.iids
            assert set(have.tolist()) <= set(pid), f"{kind} vectors of deleted products"
            vectors[kind] = {
                pid[i]: tuple(np.round(v, 5).tolist())
                for i, v in zip(have.tolist(), be.get(have), strict=True)
            }
        lexical = {pid[i]: " ".join(engine.lexical._docs[i]) for i in engine.lexical.iids.tolist()}
        return {
            "products": {p.id: (p.title, p.text, p.attributes, p.image_hash) for p in products},
            "vectors": vectors,
            "lexical": lexical,
            "attributes": engine.attribute_fields,
        }
    finally:
        engine.close()
