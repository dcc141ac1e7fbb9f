"""Shared fixtures: a tiny catalog with real (PIL-made) photos, a toy aligned embedder, and an index."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from fakes import fake_embedder as _fake_embedder  # noqa: E402
from fakes import write_tiny_catalog

SHARED_CATALOG = (
    Path(__file__).resolve().parents[2] / "shared/datasets/fashion-product-images-small/styles.csv"
)


@pytest.fixture
def tiny_catalog(tmp_path: Path) -> Path:
    """CSV catalog of 12 products with photos; columns: id,title,description,colour,category,gender,price,image."""
    return write_tiny_catalog(tmp_path / "shop")


@pytest.fixture
def fake_embedder():
    return _fake_embedder()


@pytest.fixture
def tiny_mapping():
    from prodsearch.catalog.schema import ColumnMapping

    return ColumnMapping(
        id="id",
        title="title",
        text=["description"],
        attributes=["colour", "category", "gender", "price"],
        image="image",
    )


@pytest.fixture
def tiny_index(tmp_path: Path, tiny_catalog: Path, fake_embedder, tiny_mapping) -> Path:
    from prodsearch.search.builder import build_index
    from prodsearch.search.recipe import EmbedderRecipe

    out = tmp_path / "index"
    recipe = EmbedderRecipe(text_encoder="fake-text", image_encoder="fake-image")
    build_index(tiny_catalog, out, mapping=tiny_mapping, recipe=recipe, embedder=fake_embedder)
    return out


@pytest.fixture
def tiny_engine(tiny_index: Path, fake_embedder):
    from prodsearch.search.engine import Engine

    engine = Engine.open(tiny_index, embedder=fake_embedder)
    yield engine
    engine.close()


@pytest.fixture
def shared_catalog() -> Path:
    if not SHARED_CATALOG.is_file():
        pytest.skip(f"shared fashion catalog not found at {SHARED_CATALOG}")
    return SHARED_CATALOG
