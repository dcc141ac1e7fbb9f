"""Interaction logs: every bad row reported with its row, field and reason; the rest used."""

from __future__ import annotations

import json

import pytest

from fakes import make_photo
from prodsearch.interactions import read_interactions, split_by_time
from prodsearch.interactions.log import InteractionError, parse_timestamp

IDS = ["p01", "p02", "p03"]
NOW = 1_800_000_000.0  # 2027-01-15


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_each_bad_row_is_reported_with_row_field_and_reason_and_the_rest_used(tmp_path):
    make_photo(tmp_path / "shopper.jpg", "red")
    rows = [
        {"query": "red shirt", "product_id": "p01", "event": "click", "timestamp": "2026-12-01T10:00:00Z"},
        {"query": "red shirt", "product_id": "nope", "event": "click", "timestamp": 1764583200},
        {"query": "red shirt", "product_id": "p02", "event": "like", "timestamp": 1764583200},
        {"query": "red shirt", "product_id": "p02", "event": "view", "timestamp": "yesterday"},
        {"query": "red shirt", "product_id": "p02", "event": "view", "timestamp": NOW + 86400},
        {"query": "", "product_id": "p02", "event": "view", "timestamp": 1764583200},
        {"query": "red shirt", "product_id": "p01", "event": "click", "timestamp": "2026-12-01T10:00:00Z"},
        {"query_image": "missing.jpg", "product_id": "p03", "event": "purchase", "timestamp": 1764583200},
        {"query": "", "product_id": "", "event": "view", "timestamp": 1764583200},
        {
            "query_image": "shopper.jpg",
            "product_id": "p03",
            "event": "Add-to-cart",
            "timestamp": 1764583200000,
        },
    ]
    res = read_interactions(_write(tmp_path / "log.jsonl", rows), IDS, now=NOW)
    got = {(p.row, p.field, p.reason.split(":")[0]) for p in res.problems}
    assert got == {
        (2, "product_id", "unknown product id"),
        (3, "event", "unknown event"),
        (4, "timestamp", "unparsable timestamp"),
        (5, "timestamp", "future timestamp"),
        (6, "query", "no query"),
        (7, None, "duplicate event"),
        (8, "query_image", "query photo not found"),
        (9, "product_id", "missing product id"),
    }
    assert "same as row 1" in next(p.reason for p in res.problems if p.row == 7)
    assert "'nope'" in str(res.problems[0]) and "row 2" in str(res.problems[0])
    assert [(e.row, e.event) for e in res.events] == [(10, "add_to_cart"), (1, "click")]  # time order
    shopper = res.events[0]
    assert shopper.query_image == str(tmp_path / "shopper.jpg") and shopper.time == 1764583200.0
    assert res.by_reason()["unknown event"] == 1 and res.accepted == 2 and res.rejected == 8
    assert res.summary().startswith(f"{tmp_path / 'log.jsonl'}: 10 rows, 2 ok, 8 bad (")
    report = json.loads(res.write_report(tmp_path / "report.json").read_text())
    assert report["rejected"] == 8 and report["problems"][0]["row"] == 2
    with pytest.raises(
        InteractionError, match=r"row 2 \(id 'nope'\), field 'product_id': unknown product id"
    ):
        read_interactions(tmp_path / "log.jsonl", IDS, now=NOW, strict=True)


def test_csv_and_parquet_logs_read_through_the_catalog_readers(tmp_path):
    (tmp_path / "log.csv").write_text(
        "query,product_id,event,timestamp,session_id\nblue bag,p02,purchase,2026-12-01 10:00:00,s1\n"
    )
    res = read_interactions(tmp_path / "log.csv", IDS, now=NOW)
    assert [(e.product_id, e.event, e.session_id) for e in res.events] == [("p02", "purchase", "s1")]
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    pd.DataFrame(
        {"query": ["a", "b"], "product_id": ["p01", "zz"], "event": ["view", "view"], "timestamp": [1.0, 2.0]}
    ).to_parquet(tmp_path / "log.parquet")
    res = read_interactions(tmp_path / "log.parquet", IDS, now=NOW)
    assert res.accepted == 1 and res.problems[0].row == 2


def test_a_log_without_the_required_columns_is_one_clear_error(tmp_path):
    (tmp_path / "log.csv").write_text("query,product,when\nx,p01,1\n")
    with pytest.raises(InteractionError, match=r"lacks column\(s\) \['event', 'timestamp'\]"):
        read_interactions(tmp_path / "log.csv", IDS)
    with pytest.raises(InteractionError, match="not found"):
        read_interactions(tmp_path / "none.jsonl", IDS)


def test_timestamps_iso_and_epoch():
    assert parse_timestamp("1970-01-01T00:01:00Z") == 60.0
    assert parse_timestamp("1970-01-01T01:01:00+01:00") == 60.0
    assert parse_timestamp("1970-01-01 00:01:00") == 60.0  # naive = UTC
    assert parse_timestamp("60") == 60.0 and parse_timestamp("1764583200000") == 1764583200.0
    for bad in ("soon", "-5", "nan"):
        with pytest.raises(ValueError):
            parse_timestamp(bad)


def test_split_by_time_holds_out_the_latest_window_and_keeps_ties_together(tmp_path):
    times = [5, 1, 3, 3, 2, 4, 3, 6, 7, 8]  # file order is not time order
    rows = [
        {"query": f"q{i}", "product_id": "p01", "event": "view", "timestamp": t} for i, t in enumerate(times)
    ]
    res = read_interactions(_write(tmp_path / "log.jsonl", rows), IDS, now=NOW)
    early, late = split_by_time(res, 0.5)
    assert [e.time for e in early.events] == [1, 2, 3, 3, 3] and [e.row for e in late.events] == [
        6,
        1,
        8,
        9,
        10,
    ]
    early, late = split_by_time(res, 0.6)  # the cut falls among the 3s: all of them are held out
    assert [e.time for e in early.events] == [1, 2]
    assert [e.time for e in late.events] == [3, 3, 3, 4, 5, 6, 7, 8]
    assert max(e.time for e in early.events) < min(e.time for e in late.events)
    early, late = split_by_time(res, 0.3)
    assert len(late) == 3 and min(e.time for e in late.events) == 6
    with pytest.raises(ValueError, match="holdout_fraction"):
        split_by_time(res, 1.0)
