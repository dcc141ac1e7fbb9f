"""P x K batches (config batch_groups): hard in-batch negatives of the same product type."""

from __future__ import annotations

import random

from helpers import TinyFactory, synthetic_products

from prodsearch.training.config import TrainConfig
from prodsearch.training.data import grouped_batches
from prodsearch.training.main import train


def _distinct(batch, groups):
    return len({groups[i] for i in batch})


def test_every_item_once_in_runs_of_one_group():
    rng = random.Random(0)
    groups = [i % 5 for i in range(200)] + [-1] * 13  # 5 types of 40, 13 items without a type
    items = list(range(len(groups)))
    batches = grouped_batches(items, groups, batch_size=16, n_groups=2, rng=rng)
    assert sorted(i for b in batches for i in b) == items
    assert all(len(b) == 16 for b in batches[:-1])
    # 16 items in runs of 8: a batch spans at most 3 groups (a run split across batches), usually 2
    assert max(_distinct(b, groups) for b in batches) <= 3
    assert sum(_distinct(b, groups) <= 2 for b in batches) >= len(batches) // 2
    random_batches = [items[s : s + 16] for s in range(0, len(items), 16)]
    assert min(_distinct(b, groups) for b in random_batches[:-1]) == 5  # what random batches look like


def test_the_grouping_changes_with_the_rng():
    groups = [i % 4 for i in range(64)]
    a = grouped_batches(range(64), groups, 16, 2, random.Random(0))
    b = grouped_batches(range(64), groups, 16, 2, random.Random(1))
    assert a != b


def test_training_draws_batches_by_the_detected_type(tmp_path, bert_dir):
    products = synthetic_products(tmp_path / "photos", n=48)  # 'kind' is detected as the type column
    kinds = {p.id: p.attributes["kind"] for p in products}
    seen = []
    import prodsearch.training.loop as loop

    real = loop.Trainer._batches

    def spy(self, epoch):
        for b in real(self, epoch):
            seen.append([kinds[self.data.pairs.ids[i]] for i in b])
            yield b

    cfg = TrainConfig(epochs=2, batch_size=8, batch_groups=2, embed_dim=8, head_hidden=16, patience=0,
                      val_fraction=0.2, test_fraction=0.0)  # fmt: skip
    import pytest

    mp = pytest.MonkeyPatch()
    mp.setattr(loop.Trainer, "_batches", spy)
    try:
        train(None, tmp_path / "run", cfg, products=products, factory=TinyFactory(bert_dir), progress=False)
    finally:
        mp.undo()
    # random batches of 8 over 5 even types hold ~4.2 types; runs of 4 (shorter at a type's end) ~2-3
    assert seen and sum(len(set(b)) for b in seen) / len(seen) < 3.0
