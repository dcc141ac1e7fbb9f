"""The registry's split stays stable as the catalog grows: no product that was ever held out (test)
enters training, whatever products are added, including ones that link a held-out component to a
training one through a shared title or photo (issue 12)."""

from __future__ import annotations

import json
import random

from prodsearch.catalog.schema import Product
from prodsearch.training.data import build_pairs, split_pairs


def _catalog(n: int, seed: int = 0) -> list[Product]:
    """Products 0..n-1 (the first n of one fixed sequence), many sharing titles or photos."""
    rng = random.Random(seed)
    out = []
    for i in range(2000):
        title = f"title {rng.randint(0, 700)}"
        img = f"img{rng.randint(0, 120)}" if rng.random() < 0.2 else f"own{i}"
        out.append(Product(id=f"p{i:04d}", title=title, image_path=f"/x/{i}.jpg", image_hash=img))
    return out[:n]


def _sides(pairs, split) -> dict[str, str]:
    return {pairs.ids[i]: side for side, idx in split.items() for i in idx}


def test_frozen_split_never_moves_a_held_out_product_into_training():
    frozen: dict[str, str] = {}
    ever_held_out: set[str] = set()
    merged_into_test = 0
    for n in (400, 600, 800, 1000, 1300):  # five growth steps
        pairs = build_pairs(_catalog(n), n_variants=1)
        sides = _sides(pairs, split_pairs(pairs, 0.15, 0.15, seed=3, frozen=frozen))
        assert sorted(sides) == sorted(pairs.ids)
        trained = {pid for pid, s in sides.items() if s == "train"}
        assert not trained & ever_held_out, "a product held out earlier is now trained on"
        # frozen products keep their side, except when a new product linked their component to a
        # more held-out one (train -> val -> test), never the other way
        rank = {"train": 0, "val": 1, "test": 2}
        for pid, old in frozen.items():
            if sides[pid] != old:
                assert rank[sides[pid]] > rank[old], (pid, old, sides[pid])
                merged_into_test += 1
        # no title or photo across sides
        seen: dict[tuple[str, int], str] = {}
        for i, pid in enumerate(pairs.ids):
            for key in (("t", pairs.title_group[i]), ("i", pairs.image_group[i])):
                assert seen.setdefault(key, sides[pid]) == sides[pid]
        ever_held_out |= {pid for pid, s in sides.items() if s != "train"}
        frozen.update({pid: s for pid, s in sides.items() if pid not in frozen})
        share = sum(s == "test" for s in sides.values()) / len(sides)
        assert 0.08 < share < 0.3, share
    assert merged_into_test > 0  # the growth did link components across sides


def test_new_products_get_their_side_from_their_hash_not_the_catalog_size():
    """A component without frozen products goes by its own hash: the same side whether it arrives
    in a small or a large catalog (quota filling would shift it)."""
    small = build_pairs(_catalog(300), n_variants=1)
    large = build_pairs(_catalog(900), n_variants=1)
    a = _sides(small, split_pairs(small, 0.1, 0.1, seed=1, frozen={}))
    b = _sides(large, split_pairs(large, 0.1, 0.1, seed=1, frozen={}))

    # products whose component did not grow between the two catalogs keep their side
    def comp_size(pairs, pid):
        i = pairs.ids.index(pid)
        return sum(
            1
            for j in range(len(pairs))
            if pairs.title_group[j] == pairs.title_group[i] or pairs.image_group[j] == pairs.image_group[i]
        )

    same = [pid for pid in a if comp_size(small, pid) == 1 and comp_size(large, pid) == 1]
    assert len(same) > 50
    assert all(a[pid] == b[pid] for pid in same)
    # the quota-filled split (no frozen split) does shift them: the reason for the hash rule
    qa = _sides(small, split_pairs(small, 0.1, 0.1, seed=1))
    qb = _sides(large, split_pairs(large, 0.1, 0.1, seed=1))
    assert any(qa[pid] != qb[pid] for pid in same)


def test_refresh_keeps_the_split_as_the_catalog_grows(tmp_path, registry_env):
    """Through refresh: an index of 120 products, then 150, then 180, each synced and re-trained;
    no version's training split holds a product any earlier version held out."""
    from registry_helpers import TRAIN_CFG, build_trained_index, write_shop

    from prodsearch.catalog.readers import read_catalog
    from prodsearch.registry import Registry
    from prodsearch.registry.refresh import refresh
    from prodsearch.training.main import train

    catalog = write_shop(tmp_path / "shop", 120)
    train(None, tmp_path / "run", TRAIN_CFG, products=read_catalog(catalog).products, progress=False)
    idx = build_trained_index(tmp_path / "idx", catalog, tmp_path / "run")
    for n in (150, 180):
        catalog = write_shop(tmp_path / "shop", n)
        rep = refresh(idx, catalog, steps=("sync", "train"), epochs=2)
        assert rep["sync"]["added"] == 30
    reg = Registry(idx)
    assert [v.version for v in reg.versions()] == ["v1", "v2", "v3"]
    held_out: set[str] = set()
    for v in reg.versions():
        split = json.loads((reg.run_dir(v.version) / "split.json").read_text())
        assert not set(split["train"]) & held_out, v.version
        held_out |= set(split["test"]) | set(split["val"])
    frozen = reg.frozen_split()
    assert len(frozen) == 180 and {pid for pid, s in frozen.items() if s != "train"} == held_out
