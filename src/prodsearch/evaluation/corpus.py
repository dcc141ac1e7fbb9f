"""The evaluation corpus (every catalog product, addressed by position) and its test split.

Queries are drawn only from the *test* split so that a model fine-tuned by ``prodsearch train`` is
never evaluated on products (or titles / photos shared with products) it was trained on. The split
is the training package's own group-level split (union of identical title / identical photo), with
the run's split parameters, so evaluation and training always agree.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from prodsearch.catalog.schema import Product

log = logging.getLogger(__name__)


@dataclass
class SplitParams:
    """Parameters of the group-level train/val/test split (defaults = ``TrainConfig``'s)."""

    val_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 0

    @classmethod
    def from_run(cls, run_dir: str | Path) -> SplitParams | None:
        """Split parameters recorded in a training run folder (``config.json``), or None if absent."""
        for name in ("config.json", "train_config.json", "run.json"):
            path = Path(run_dir) / name
            if path.is_file():
                try:
                    data = json.loads(path.read_text("utf-8"))
                except json.JSONDecodeError:
                    continue
                data = data.get("config", data)
                if "split_seed" in data or "test_fraction" in data:
                    return cls(
                        val_fraction=float(data.get("val_fraction", cls.val_fraction)),
                        test_fraction=float(data.get("test_fraction", cls.test_fraction)),
                        seed=int(data.get("split_seed", cls.seed)),
                    )
        return None


@dataclass
class Corpus:
    """All products of the catalog/index: position ``i`` <-> ``products[i]``."""

    products: list[Product]
    test: np.ndarray = field(
        default_factory=lambda: np.zeros(0, dtype=np.int64)
    )  # positions in the test split
    split: dict[str, Any] = field(default_factory=dict)  # how the split was made (for metrics.json)

    def __post_init__(self) -> None:
        self.ids = [p.id for p in self.products]
        self.pos_of = {pid: i for i, pid in enumerate(self.ids)}
        self.has_image = np.asarray([bool(p.image_path) for p in self.products], dtype=bool)

    def __len__(self) -> int:
        return len(self.products)

    def attribute(self, name: str) -> list[str | None]:
        from prodsearch.evaluation.fields import clean_value

        return [clean_value(p.attributes.get(name)) for p in self.products]


def split_test_positions(products: Sequence[Product], params: SplitParams) -> np.ndarray:
    """Positions (into ``products``) of the training package's test split with ``params``.

    Only products with a title and a photo take part in the training split; the others are never
    test products. An empty array when the catalog is too small to split.
    """
    from prodsearch.errors import CatalogError
    from prodsearch.training.data import build_pairs, split_pairs

    try:
        pairs = build_pairs(list(products), n_variants=1, min_pairs=1)
    except CatalogError:
        return np.zeros(0, dtype=np.int64)
    split = split_pairs(
        pairs, val_fraction=params.val_fraction, test_fraction=params.test_fraction, seed=params.seed
    )
    test_ids = {pairs.ids[i] for i in split["test"]}
    return np.asarray([i for i, p in enumerate(products) if p.id in test_ids], dtype=np.int64)
