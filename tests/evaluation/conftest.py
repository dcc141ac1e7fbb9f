"""Fixtures for the evaluation tests; the toy encoders and tiny products live in eval_helpers.py."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from eval_helpers import make_products  # noqa: E402

from prodsearch.catalog.schema import Product  # noqa: E402
from prodsearch.evaluation.corpus import Corpus  # noqa: E402


@pytest.fixture
def tiny_products(tmp_path) -> list[Product]:
    return make_products(tmp_path / "photos")


@pytest.fixture
def tiny_corpus(tiny_products) -> Corpus:
    """Test split = p0, p1, p3, p6 (positions 0, 1, 3, 6)."""
    return Corpus(tiny_products, test=np.asarray([0, 1, 3, 6]), split={"fixed": True})
