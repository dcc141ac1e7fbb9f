"""Stratified catalog samples (issue 11, item 10)."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

from catalog_fixtures import make_jpeg, write_csv

from prodsearch.catalog import load_mapping, read_catalog
from prodsearch.catalog.sample import choose_strata_field, stratified_order, write_stratified_sample


def test_stratified_order_deals_round_robin_and_prefixes_are_nested():
    keys = ["c", "a", "a", "a", "a", "b", "c"]
    order = stratified_order(keys, seed=0)
    assert sorted(order) == list(range(7))
    # rounds: one of each group (larger groups first), then the next one of each group still holding rows
    assert [keys[i] for i in order] == ["a", "c", "b", "a", "c", "a", "a"]
    assert stratified_order(keys, seed=0) == order and stratified_order(keys, seed=1) != order
    assert set(order[:3]) <= set(order[:5])  # nested by construction: a prefix of one order


def test_subkeys_spread_each_group_over_its_common_subgroups_first():
    keys = ["dress"] * 6 + ["bag"] * 2
    colours = ["black", "black", "red", "red", "red", "pink", "red", "blue"]
    order = stratified_order(keys, seed=0, subkeys=colours)
    picked = [(keys[i], colours[i]) for i in order]
    # round 1: one dress (its commonest colour, red) and one bag; round 2: the next dress colour...
    assert picked[:4] == [("dress", "red"), ("bag", "blue"), ("dress", "black"), ("bag", "red")]
    assert sorted(order) == list(range(8))


def test_choose_strata_field_prefers_the_finest_category():
    cols = {
        "gender": ["m", "w"] * 50,
        "type": [f"t{i % 30}" for i in range(100)],
        "sku": [str(i) for i in range(100)],
    }
    assert choose_strata_field(cols) == "sku"  # 100 distinct values are still under MAX_STRATA
    assert choose_strata_field({"gender": cols["gender"], "type": cols["type"]}) == "type"
    assert choose_strata_field({"one": ["x"] * 10}) is None


def test_write_stratified_sample_covers_every_group_and_keeps_photos_in_place(tmp_path: Path):
    shop = tmp_path / "shop"
    rows = []
    for i in range(60):  # 50 tops first, then 10 dresses: the first 20 rows hold no dress
        kind = "Tops" if i < 50 else "Dresses"
        make_jpeg(shop / "images" / f"{i}.jpg", (i * 4, 50, 90))
        rows.append({"id": str(i), "title": f"{kind} {i}", "description": "", "colour": kind, "image": f"images/{i}.jpg"})  # fmt: skip
    catalog = write_csv(shop / "styles.csv", rows)
    sample_csv, mapping_path, field = write_stratified_sample(catalog, tmp_path / "cache" / "sample", 20)
    assert field == "colour"
    got = list(csv.DictReader(open(sample_csv, encoding="utf-8")))
    assert Counter(r["colour"] for r in got) == {"Tops": 10, "Dresses": 10}
    assert json.loads(mapping_path.read_text())["image_root"] == str(shop.absolute())
    res = read_catalog(sample_csv, load_mapping(mapping_path))  # photos resolve in the catalog's folder
    assert len(res.products) == 20 and not res.problems
