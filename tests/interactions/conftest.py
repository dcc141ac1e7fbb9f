from __future__ import annotations

import sys
from pathlib import Path

import pytest

for sub in ("training", "service"):  # TinyFactory / synthetic products; the service's test settings
    sys.path.insert(0, str(Path(__file__).parents[1] / sub))


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PRODSEARCH_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def tiny_engine(tiny_index: Path, fake_embedder):
    from prodsearch.search.engine import Engine

    engine = Engine.open(tiny_index, embedder=fake_embedder)
    yield engine
    engine.close()
