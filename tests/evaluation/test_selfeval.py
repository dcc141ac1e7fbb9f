"""``prodsearch train`` ends by judging its run against the untuned index (issue 8, item 1): the
run's index is built aside with the whole catalog as gallery, calibrated on validation products,
and compared on test products; the comparison is recorded in the run folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cli_helpers import run_cli
from fakes import write_colour_catalog

TRAIN = ["--epochs", "2", "--batch-size", "16", "--threads", "1", "--no-progress"]


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Path:
    return write_colour_catalog(tmp_path_factory.mktemp("selfeval") / "shop", 240)


@pytest.mark.slow  # the bundled towers (MiniLM, EfficientNet-Lite0) encode 240 products
def test_train_records_its_comparison_with_the_untuned_index(shop, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PRODSEARCH_CACHE", str(tmp_path / "cache"))
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    run = tmp_path / "run"
    code, out, err = run_cli(capsys, "train", str(shop), "--out", str(run), *TRAIN)
    assert code == 0, err
    assert "self-evaluation against the untuned index (gallery: all 240 products the run saw)" in out

    got = json.loads((run / "run.json").read_text())["self_evaluation"]
    assert got["gallery"] == 240  # the whole catalog, not the 24-product test split
    assert set(got["kinds"]) == {"text", "image", "text+image"}  # text+image: photo + colour word
    split = json.loads((run / "split.json").read_text())
    for kind, row in got["kinds"].items():
        assert 0 < row["queries"] <= len(split["test"]), kind
        assert row["gain"] == pytest.approx(row["trained"] - row["untuned"], abs=2e-4), kind
        low, high = row["gain_ci"]
        assert low <= row["gain"] <= high, kind
        assert f"{kind} queries, {row['metric']} on {row['queries']} held-out test queries" in out
    # the full calibration lives beside it, and the verdict warns exactly where the trained model lost
    cal = json.loads((run / "calibration.json").read_text())
    assert cal["gallery"] == 240 and cal["weights"] == got["weights"]
    lost = [k for k, row in got["kinds"].items() if row["trained"] < row["untuned"] - 0.005]
    assert [line.split()[0] for line in got["verdict"]] == lost
    assert err.count("WARNING: ") == len(lost)
    assert not [p for p in os.listdir(scratch) if p.startswith("prodsearch-selfeval")]  # scratch index gone

    # --max-products: the gallery is the products the run was trained on
    small = tmp_path / "small"
    code, out, err = run_cli(capsys, "train", str(shop), "--out", str(small), "--max-products", "120", *TRAIN)
    assert code == 0, err
    assert json.loads((small / "run.json").read_text())["self_evaluation"]["gallery"] == 120


def test_no_self_evaluate_skips_it(tmp_path, tiny_catalog, monkeypatch, capsys):
    monkeypatch.setenv("PRODSEARCH_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    args = ["--epochs", "1", "--batch-size", "4", "--val-fraction", "0.25", "--test-fraction", "0"]
    code, out, err = run_cli(
        capsys, "train", str(tiny_catalog), "--out", str(run), *args, "--no-self-evaluate"
    )
    assert code == 0, err
    assert "self_evaluation" not in json.loads((run / "run.json").read_text())
    assert "self-evaluation" not in out
    # a catalog too small for held-out queries says so instead of inventing a comparison
    code, out, err = run_cli(capsys, "train", str(tiny_catalog), "--out", str(run), *args, "--overwrite")
    assert code == 0, err
    got = json.loads((run / "run.json").read_text())["self_evaluation"]
    assert got["gallery"] == 12 and "too few held-out products" in got["skipped"]
    assert "self-evaluation against the untuned index" in out and "skipped" in out
