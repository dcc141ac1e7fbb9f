"""Joint learning: align product text and photos in one space from the catalog's own pairs.

Entry points: :func:`prodsearch.training.main.train`, :func:`prodsearch.training.main.train_from_cli`,
:func:`prodsearch.training.embedder.load_trained_embedder`; defaults live in
:class:`prodsearch.training.config.TrainConfig`. Imported lazily (torch is heavy).
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "TrainConfig": "prodsearch.training.config",
    "load_config": "prodsearch.training.config",
    "train": "prodsearch.training.main",
    "train_from_cli": "prodsearch.training.main",
    "RunResult": "prodsearch.training.main",
    "load_trained_embedder": "prodsearch.training.embedder",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)


__all__ = list(_LAZY)
