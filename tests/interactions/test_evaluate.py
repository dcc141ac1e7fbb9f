"""`evaluate --interactions LOG`: the later window's queries judged by shoppers' events."""

from __future__ import annotations

import json

import pytest

from prodsearch.errors import ConfigError
from prodsearch.evaluation.runner import run_evaluation


def test_held_out_window_judges_the_interactions_protocols(tiny_index, tiny_catalog, fake_embedder, tmp_path):
    photo = tiny_catalog.parent / "images" / "p02.jpg"
    rows = [  # the earlier half trains; a query judged there must not be scored
        {"query": "Red cotton shirt", "product_id": "p09", "event": "purchase", "timestamp": 1},
        {"query": "Black leather boots", "product_id": "p07", "event": "click", "timestamp": 2},
        {"query": "Red cotton shirt", "product_id": "p01", "event": "click", "timestamp": 3},
        {"query": "Blue backpack", "product_id": "p09", "event": "view", "timestamp": 4},
        {"query": "Blue backpack", "product_id": "p09", "event": "purchase", "timestamp": 5},
        {"query": "Yellow summer dress", "product_id": "p07", "event": "click", "timestamp": 6},
        {"query_image": str(photo), "product_id": "p02", "event": "click", "timestamp": 7},
        {"query": "Red cotton shirt", "product_id": "zzz", "event": "click", "timestamp": 8},
    ]
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = run_evaluation(
        tiny_index, tmp_path / "report", embedder=fake_embedder, progress=False,
        protocols=["interactions", "interactions_photo"], interactions=log, holdout=0.5,
    )  # fmt: skip
    assert res["queries"] == {
        "interactions": 2,
        "interactions_photo": 1,
    }  # "Blue backpack", "Yellow summer dress"
    assert res["config"]["interactions"]["events"] == 3  # 7 valid (the unknown id reported), later 3
    bm25 = res["systems"]["bm25"]
    assert bm25["interactions/hit@1"] == pytest.approx(0.5)  # backpack found first; the dress was not bought
    assert res["systems"]["image"]["interactions_photo/hit@1"] == 1.0
    assert (tmp_path / "report" / "report.md").is_file()


def test_interaction_protocols_need_a_log(tiny_index, fake_embedder, tmp_path):
    with pytest.raises(ConfigError, match="interactions"):
        run_evaluation(
            tiny_index, tmp_path / "r", embedder=fake_embedder, progress=False, protocols=["interactions"]
        )
