"""Fixtures of the catalog tests (helpers live in ``catalog_fixtures``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from catalog_fixtures import bad_rows, write_csv, write_jsonl, write_parquet


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    """An empty catalog folder ``tmp_path/shop`` (its parent holds files that must stay out of reach)."""
    root = tmp_path / "shop"
    root.mkdir()
    return root


@pytest.fixture(params=["csv", "jsonl", "parquet"])
def bad_catalog(request, shop: Path) -> Path:
    """The :func:`bad_rows` catalog in each supported format."""
    rows = bad_rows(shop)
    writer = {"csv": write_csv, "jsonl": write_jsonl, "parquet": write_parquet}[request.param]
    return writer(shop / f"catalog.{request.param}", rows)
