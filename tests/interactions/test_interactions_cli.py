"""`prodsearch interactions check|rank`, `calibrate --interactions`, `evaluate --interactions`."""

from __future__ import annotations

import json

from cli_helpers import run_cli as run
from prodsearch.search.engine import Engine


def _log(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_check_lists_bad_rows_and_writes_the_report(tiny_index, tmp_path, capsys):
    log = _log(
        tmp_path / "log.jsonl",
        [
            {"query": "red", "product_id": "p01", "event": "click", "timestamp": 1},
            {"query": "red", "product_id": "p99", "event": "click", "timestamp": 2},
            {"query": "red", "product_id": "p01", "event": "wish", "timestamp": 3},
        ],
    )
    code, out, _ = run(
        capsys,
        "interactions",
        "check",
        str(log),
        "--index",
        str(tiny_index),
        "--report",
        str(tmp_path / "r.json"),
    )
    assert code == 0
    assert "3 rows, 1 ok, 2 bad (1 unknown product id, 1 unknown event)" in out
    assert "row 2 (id 'p99'), field 'product_id': unknown product id" in out
    assert json.loads((tmp_path / "r.json").read_text())["rejected"] == 2
    code, _, err = run(capsys, "interactions", "check", str(log), "--index", str(tiny_index), "--strict")
    assert code == 2 and "row 2" in err and "Traceback" not in err


def test_calibrate_with_interactions_stores_popularity_of_the_whole_log(tiny_catalog, tmp_path, capsys):
    tiny_index = tmp_path / "idx"
    fake = ["--text-encoder", "fake-text", "--image-encoder", "fake-image"]
    assert run(capsys, "index", str(tiny_catalog), "--out", str(tiny_index), *fake)[0] == 0
    rows = [
        {"query": f"{w} shirt", "product_id": "p12", "event": "purchase", "timestamp": t}
        for t, w in enumerate("abcdefghijklmnopqrstuvwxyz")
    ]
    log = _log(tmp_path / "log.jsonl", rows)
    code, out, err = run(capsys, "calibrate", str(tiny_index), "--interactions", str(log), "--holdout", "0.5")
    assert code == 0, err
    with Engine.open(tiny_index) as engine:
        assert engine.popularity == {int(engine.store.iid_of(["p12"])[0]): 1.0}
    doc = json.loads((tiny_index / "popularity.json").read_text())
    assert doc["counts"]["p12"] > 12  # all 26 purchases, decayed: the whole log, not the earlier half
