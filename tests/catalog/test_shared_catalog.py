"""The real fashion catalog (shared, read-only): detection with no mapping, and every row accepted."""

from __future__ import annotations

from pathlib import Path

import pytest

from prodsearch.catalog import read_catalog
from prodsearch.catalog.images import file_sha256


@pytest.mark.slow
def test_first_300_rows_of_the_fashion_catalog(shared_catalog: Path):
    res = read_catalog(shared_catalog, limit=300)
    m = res.mapping
    assert (m.id, m.title, m.image, m.text) == ("id", "productDisplayName", "image", [])
    assert m.attributes == [
        "gender", "masterCategory", "subCategory", "articleType", "baseColour", "season", "year", "usage",
    ]  # fmt: skip
    assert (res.rows, len(res.products), res.problems) == (300, 300, [])
    first = res.products[0]
    assert first.id == "1163" and first.title == "Nike Sahara Team India Fanwear Round Neck Jersey"
    assert first.attributes["year"] == "2011"
    assert first.image_path == str((shared_catalog.parent / "images" / "1163.jpg").resolve())
    assert first.image_hash == file_sha256(first.image_path)
