"""The command line, in-process, on the tiny catalog with the toy encoders (registered by tests/fakes.py)."""

from __future__ import annotations

import json

import pytest

from cli_helpers import run_cli as run

FAKE = ["--text-encoder", "fake-text", "--image-encoder", "fake-image"]


@pytest.fixture
def cli_index(tmp_path, tiny_catalog, capsys):
    out = tmp_path / "idx"
    code, stdout, _ = run(capsys, "index", str(tiny_catalog), "--out", str(out), *FAKE)
    assert code == 0, stdout
    assert "12/12 rows accepted" in stdout and "added 12" in stdout
    return out


def test_index_is_incremental(cli_index, tiny_catalog, capsys):
    code, stdout, _ = run(capsys, "index", str(tiny_catalog), "--out", str(cli_index), *FAKE)
    assert (
        code == 0 and "added 0, updated 0, unchanged 12" in stdout and "encoded 0 texts, 0 images" in stdout
    )


def test_search_json_and_table(cli_index, tiny_catalog, capsys):
    code, stdout, _ = run(capsys, "search", str(cli_index), "waterproof jacket", "-k", "3", "--json")
    assert code == 0
    data = json.loads(stdout)
    assert data["results"][0]["id"] == "p10" and data["results"][0]["attributes"]["colour"] == "green"
    code, stdout, _ = run(
        capsys,
        "search",
        str(cli_index),
        "--image",
        str(tiny_catalog.parent / "images/p05.jpg"),
        "--mode",
        "image",
        "-k",
        "1",
    )
    assert code == 0 and "p05" in stdout and "White running shoes" in stdout


def test_info(cli_index, capsys):
    code, stdout, _ = run(capsys, "info", str(cli_index))
    info = json.loads(stdout)
    assert code == 0 and info["products"] == 12 and info["embedder"] == "fake-text+fake-image"


def test_errors_are_one_line(cli_index, tmp_path, capsys):
    code, _, err = run(capsys, "search", str(tmp_path / "nope"), "shirt")
    assert code == 2 and err.startswith("error: no prodsearch index") and "Traceback" not in err
    code, _, err = run(capsys, "search", str(cli_index), "  ")
    assert code == 2 and "empty query" in err
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    code, _, err = run(capsys, "search", str(cli_index), "--image", str(bad))
    assert code == 2 and "bad.jpg" in err and "cannot decode" in err
    code, _, err = run(capsys, "search", str(cli_index), "shirt", "--filter", "{oops")
    assert code == 2 and "--filter is not valid JSON" in err


def test_index_with_other_encoder_is_refused(cli_index, tiny_catalog, capsys):
    code, _, err = run(
        capsys,
        "index",
        str(tiny_catalog),
        "--out",
        str(cli_index),
        "--text-encoder",
        "fake-text",
        "--image-encoder",
        "none",
    )
    assert code == 2 and "built with encoder" in err


def test_mapping_command_suggests_an_editable_file_and_index_reports_detection(tmp_path, capsys):
    import csv

    from PIL import Image

    photos = tmp_path / "photos"  # photos kept outside the catalog's folder
    photos.mkdir()
    rows = []
    for i in range(6):
        Image.new("RGB", (24, 32), (40 * i, 30, 200 - 30 * i)).save(photos / f"{i}.jpg")
        rows.append({"sku": f"s{i}", "name": ["HEMNES", "BILLY"][i % 2], "type": ["Bookcase", "Sofa", "Chair"][i % 3],
                     "colour": "Crème", "width": "80", "image": f"{i}.jpg"})  # fmt: skip
    cat = tmp_path / "export" / "catalog.csv"
    cat.parent.mkdir()
    with open(cat, "w", newline="", encoding="cp1252") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    code, _, err = run(capsys, "mapping", str(cat))
    assert code == 2 and "--encoding cp1252" in err  # the é is not UTF-8: the error names the encoding
    code, toml_text, _ = run(capsys, "mapping", str(cat), "--encoding", "cp1252")
    assert code == 0 and 'title = "name"' in toml_text and "#   width: technical column name" in toml_text
    mapping_file = tmp_path / "mapping.toml"
    mapping_file.write_text(toml_text.replace('title = "name"', 'title = "{name} {type}"'))

    out = tmp_path / "idx"
    code, stdout, err = run(capsys, "index", str(cat), "--out", str(out), "--encoding", "cp1252", *FAKE)
    assert code == 2 and "no valid products" in err and "image file not found" in err  # photos elsewhere
    assert "ignored 'width': technical column name" in err and "prodsearch mapping" in err
    code, _, _ = run(capsys, "index", str(cat), "--out", str(out), "--encoding", "cp1252", "--images", str(photos),
                     *FAKE)  # fmt: skip
    report = json.loads((out / "ingest-report.json").read_text())
    assert code == 0 and report["detection"]["ignored"] == {"width": "technical column name"}  # kept on disk
    code, stdout, _ = run(capsys, "info", str(out))
    assert code == 0 and json.loads(stdout)["ingest"]["ignored_columns"] == {"width": "technical column name"}
    code, stdout, _ = run(capsys, "index", str(cat), "--out", str(tmp_path / "idx2"), "--encoding", "cp1252",
                          "--mapping", str(mapping_file), "--images", str(photos), *FAKE)  # fmt: skip
    assert code == 0 and "6/6 rows accepted" in stdout, stdout
    code, stdout, _ = run(capsys, "search", str(tmp_path / "idx2"), "bookcase", "--mode", "lexical", "--json",
                          "--filter", '{"colour": "creme"}')  # fmt: skip
    titles = [r["title"] for r in json.loads(stdout)["results"]]
    assert code == 0 and titles[:2] == ["HEMNES Bookcase", "BILLY Bookcase"], titles


def test_demo_checks_the_catalog_and_the_port_before_any_work(tmp_path, capsys, monkeypatch):
    import socket

    code, _, err = run(capsys, "demo", "--catalog", str(tmp_path / "nope.csv"), "--no-serve")
    assert code == 2 and f"demo catalog not found: {tmp_path / 'nope.csv'}" in err  # the path given
    monkeypatch.setenv("PRODSEARCH_DEMO_CATALOG", str(tmp_path / "env.csv"))
    code, _, err = run(capsys, "demo", "--no-serve")
    assert code == 2 and f"$PRODSEARCH_DEMO_CATALOG={tmp_path / 'env.csv'} is not a file" in err

    catalog = tmp_path / "styles.csv"
    catalog.write_text("id,title\n1,x\n")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, out, err = run(capsys, "demo", "--catalog", str(catalog), "--port", str(port))
    assert code == 2 and f"port {port} on 127.0.0.1 is not free" in err and f"--port {port + 1}" in err
    assert "http://" not in out and "catalog:" not in out  # failed before printing or doing anything
    monkeypatch.setenv("PRODSEARCH_CACHE", str(tmp_path / "cache"))
    code, out, _ = run(capsys, "demo", "--catalog", str(catalog), "--limit", "300", "--where")
    assert code == 0 and out.strip().startswith(str(tmp_path / "cache" / "demo" / "s300-"))
    assert out.strip().endswith("index-trained")


def test_search_crop_and_regions(cli_index, tiny_catalog, capsys):
    photo = str(tiny_catalog.parent / "images/p05.jpg")
    code, out, _ = run(capsys, "search", str(cli_index), "--image", photo, "--crop", "0.1,0.1,0.9,0.9",
                       "--mode", "image", "-k", "1")  # fmt: skip
    assert code == 0 and "p05" in out
    code, out, _ = run(capsys, "search", str(cli_index), "--image", photo, "--regions", "auto", "--json")
    assert code == 0 and json.loads(out)["signals"] == ["regions"]
    code, _, err = run(capsys, "search", str(cli_index), "red", "--image", photo, "--regions", "auto")
    assert code == 2 and "--regions auto" in err
    code, _, err = run(capsys, "search", str(cli_index), "--image", photo, "--crop", "0.9,0,0.1,1")
    assert code == 2 and "crop box" in err
