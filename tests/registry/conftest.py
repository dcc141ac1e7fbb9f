"""Fixtures: the toy shop (tests/registry/registry_helpers.py), a model trained on it and one trained on
shuffled pairs (once per session), and a fresh index over the shop with either as its model."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from registry_helpers import TRAIN_CFG, build_trained_index, write_shop  # noqa: E402

N = 180


@pytest.fixture(scope="session")
def registry_env(tmp_path_factory):
    """(root, catalog, good run, bad run); the feature caches live in temporary folders."""
    import torch

    from prodsearch.catalog.readers import read_catalog
    from prodsearch.training.main import train

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("registry")
    catalog = write_shop(root / "shop", N)
    shuffled = write_shop(root / "shop", N, shuffle_photos=True, name="shuffled.csv")
    with pytest.MonkeyPatch.context() as mp:  # not for the rest of the session (its warm caches)
        mp.setenv("PRODSEARCH_CACHE", str(root / "cache"))
        for name, cat in (("good", catalog), ("bad", shuffled)):
            train(None, root / name, TRAIN_CFG, products=read_catalog(cat).products, progress=False)
    return root, catalog, root / "good", root / "bad"


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PRODSEARCH_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="session")
def _indexes(registry_env):
    root, catalog, good, bad = registry_env
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PRODSEARCH_CACHE", str(root / "cache"))
        return {
            "good": build_trained_index(root / "idx-good", catalog, good),
            "bad": build_trained_index(root / "idx-bad", catalog, bad),
        }


@pytest.fixture
def make_index(_indexes, tmp_path):
    """A fresh copy of the shop's index whose model is the "good" or the "bad" run."""

    def make(which: str) -> Path:
        out = tmp_path / f"idx-{which}"
        shutil.copytree(_indexes[which], out)
        return out

    return make
