"""read_catalog: formats, per-row validation, image safety, strict mode, encodings, reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from catalog_fixtures import (
    ACCEPTED_IDS,
    EXPECTED,
    bad_rows,
    make_jpeg,
    write_csv,
    write_jsonl,
    write_parquet,
)

from prodsearch.catalog import ColumnMapping, read_catalog, summarize_problems, write_problem_report
from prodsearch.catalog.images import file_sha256
from prodsearch.catalog.validate import problem_kind
from prodsearch.errors import CatalogError

MAPPING = ColumnMapping(id="id", title="title", text=["description"], attributes=["colour"], image="image")


def test_every_bad_row_is_rejected_with_its_reason(bad_catalog: Path):
    res = read_catalog(bad_catalog, MAPPING)
    assert res.rows == len(EXPECTED)
    assert [p.id for p in res.products] == ACCEPTED_IDS
    assert [p.row for p in res.products] == [r for r, kind in EXPECTED.items() if kind is None]
    got = {p.row: problem_kind(p.reason) for p in res.problems}
    assert got == {r: kind for r, kind in EXPECTED.items() if kind is not None}
    dup = next(p for p in res.problems if p.row == 3)
    assert dup.id == "g1" and dup.field == "id" and "row 1" in dup.reason
    assert next(p for p in res.problems if p.row == 5).field == "image"


def test_accepted_products_carry_verbatim_values_and_hashes(bad_catalog: Path):
    res = read_catalog(bad_catalog, MAPPING)
    by_id = {p.id: p for p in res.products}
    root = bad_catalog.parent.resolve()
    assert by_id["g1"].title == "Red shirt" and by_id["g1"].text == {"description": "cotton"}
    assert by_id["g1"].attributes == {"colour": "red"}
    assert by_id["g1"].image_path == str(root / "images" / "g1.jpg")
    assert by_id["g1"].image_hash == file_sha256(root / "images" / "g1.jpg")
    assert by_id["g2"].image_path == str(root / "images" / "g2.jpg")  # '..' that stays inside is fine
    # the literal string NA is a value, not a missing one
    assert (by_id["n1"].title, by_id["n1"].text["description"], by_id["n1"].attributes["colour"]) == (
        "NA",
    ) * 3
    assert by_id["w1"].title == "Grey  jeans"  # outer whitespace stripped, inner kept


def test_pixel_cap_rejects_a_real_image_over_max_pixels(shop: Path):
    make_jpeg(shop / "a.jpg", size=(40, 30))  # 1200 px
    make_jpeg(shop / "b.jpg", size=(20, 10))  # 200 px
    cat = write_csv(
        shop / "c.csv",
        [{"id": "a", "title": "A", "image": "a.jpg"}, {"id": "b", "title": "B", "image": "b.jpg"}],
        columns=["id", "title", "image"],
    )
    res = read_catalog(cat, max_pixels=1000)
    assert [p.id for p in res.products] == ["b"]
    assert problem_kind(res.problems[0].reason) == "image too large" and "40x30" in res.problems[0].reason


def test_check_images_false_skips_decoding_but_not_confinement(shop: Path):
    rows = bad_rows(shop)
    cat = write_csv(shop / "catalog.csv", rows)
    res = read_catalog(cat, MAPPING, check_images=False)
    got = {p.row: problem_kind(p.reason) for p in res.problems}
    assert 6 not in got and 7 not in got and 8 not in got  # not decoded
    assert got[9] == got[10] == got[11] == "image path escapes the catalog folder"
    assert got[5] == "image file not found"
    corrupt = next(p for p in res.products if p.id == "c1")
    assert corrupt.image_hash == file_sha256(shop / "images" / "corrupt.jpg")


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_strict_raises_naming_the_first_bad_row(shop: Path, fmt: str):
    rows = bad_rows(shop)
    writer = {"csv": write_csv, "jsonl": write_jsonl, "parquet": write_parquet}[fmt]
    cat = writer(shop / f"catalog.{fmt}", rows)
    with pytest.raises(CatalogError, match=r"^row 2, field 'id': missing id$"):
        read_catalog(cat, MAPPING, strict=True)


def test_strict_reports_an_image_problem_before_a_later_field_problem(shop: Path):
    make_jpeg(shop / "ok.jpg")
    rows = [
        {"id": "a", "title": "A", "image": "ok.jpg"},
        {"id": "b", "title": "B", "image": "gone.jpg"},  # row 2: image problem (found by the thread pool)
        {"id": "c", "title": "", "image": "ok.jpg"},  # row 3: field problem (found first, in the cheap pass)
    ]
    cat = write_csv(shop / "c.csv", rows, columns=["id", "title", "image"])
    with pytest.raises(CatalogError, match=r"^row 2 \(id 'b'\), field 'image': image file not found"):
        read_catalog(cat, strict=True)


def test_text_only_catalog_has_no_image_paths(shop: Path):
    cat = write_csv(
        shop / "c.csv", [{"id": "1", "title": "Mug"}, {"id": "2", "title": "Cup"}], columns=["id", "title"]
    )
    res = read_catalog(cat)
    assert res.mapping.image is None and not res.problems
    assert [(p.id, p.image_path, p.image_hash) for p in res.products] == [
        ("1", None, None),
        ("2", None, None),
    ]


def test_limit_reads_only_the_first_rows(shop: Path):
    rows = [{"id": str(i), "title": f"T{i}"} for i in range(10)]
    for fmt, writer in (
        ("csv", lambda p, r: write_csv(p, r, columns=["id", "title"])),
        ("jsonl", write_jsonl),
        ("parquet", write_parquet),
    ):
        res = read_catalog(writer(shop / f"c.{fmt}", rows), limit=3)
        assert (res.rows, [p.id for p in res.products]) == (3, ["0", "1", "2"]), fmt


def test_numbers_and_missing_values_become_strings(shop: Path):
    rows = [{"id": 7, "title": "Lamp", "year": 2011, "price": 2.5, "tags": ["a", "b"], "note": None}]
    mapping = ColumnMapping(id="id", title="title", text=["tags", "note"], attributes=["year", "price"])
    for fmt, writer in (("jsonl", write_jsonl), ("parquet", write_parquet)):
        (p,) = read_catalog(writer(shop / f"c.{fmt}", rows), mapping).products
        assert (p.id, p.attributes, p.text) == (
            "7",
            {"year": "2011", "price": "2.5"},
            {"tags": "a; b", "note": ""},
        ), fmt


def test_latin1_file_is_a_clear_error_with_the_byte_offset(shop: Path):
    path = shop / "c.csv"
    path.write_bytes("id,title\n1,Café crème\n".encode("latin-1"))
    offset = len(b"id,title\n1,Caf")
    with pytest.raises(
        CatalogError, match=rf"c\.csv: not valid UTF-8 at byte offset {offset}, line 2 "
    ) as err:
        read_catalog(path)
    # the message names the likely encoding, shows the line decoded with it, and the flag to pass
    assert "looks like cp1252; as cp1252 line 2 reads '1,Café crème'" in str(err.value)
    assert "--encoding cp1252" in str(err.value)
    res = read_catalog(path, encoding="latin-1")  # and readable when the encoding is given
    assert res.products[0].title == "Café crème"


def test_guess_encoding():
    from prodsearch.catalog.tables import guess_encoding

    assert guess_encoding("Crème".encode("utf-16")) == "utf-16"
    assert guess_encoding("Crème – 5 €".encode("cp1252")) == "cp1252"
    assert guess_encoding(b"caf\xe9 \x81") == "latin-1"  # 0x81 is undefined in cp1252


def test_utf8_bom_and_semicolon_delimiter(shop: Path):
    path = shop / "c.csv"
    path.write_bytes("\ufeffréférence;nom;marque\nA1;Chemise à carreaux;Lacoste\n".encode())
    res = read_catalog(path)
    assert (res.mapping.id, res.mapping.title, res.mapping.text) == ("référence", "nom", ["marque"])
    p = res.products[0]
    assert (p.id, p.title, p.text) == ("A1", "Chemise à carreaux", {"marque": "Lacoste"})


def test_tsv_and_quoted_newlines(shop: Path):
    path = shop / "c.tsv"
    path.write_text('id\ttitle\tdescription\n1\tMug\t"two\nlines"\n\n2\tCup\t\n', encoding="utf-8")
    res = read_catalog(path)
    assert [(p.id, p.text["description"]) for p in res.products] == [("1", "two\nlines"), ("2", "")]
    assert res.rows == 2  # the blank line is not a row


def test_malformed_rows_are_problems_not_failures(shop: Path):
    (shop / "c.csv").write_text("id,title\n1,Mug\n2,Cup,extra,fields\n3,Bowl,\n", encoding="utf-8")
    res = read_catalog(shop / "c.csv")
    assert [p.id for p in res.products] == ["1", "3"]  # a trailing empty field is tolerated
    (prob,) = res.problems
    assert (prob.row, problem_kind(prob.reason)) == (2, "malformed row") and "4 fields" in prob.reason
    (shop / "d.jsonl").write_text('{"id": "1", "title": "Mug"}\n{not json\n[1, 2]\n', encoding="utf-8")
    res = read_catalog(shop / "d.jsonl")
    assert [p.id for p in res.products] == ["1"]
    assert [(p.row, problem_kind(p.reason)) for p in res.problems] == [
        (2, "malformed row"),
        (3, "malformed row"),
    ]


def test_mapping_naming_a_missing_column_is_an_error(shop: Path):
    cat = write_csv(shop / "c.csv", [{"id": "1", "title": "Mug"}], columns=["id", "title"])
    bad = ColumnMapping(id="id", title="title", attributes=["colour"])
    with pytest.raises(CatalogError, match=r"c\.csv: .*attributes='colour'.*\['id', 'title'\]"):
        read_catalog(cat, bad)


def test_undetectable_catalog_error_names_the_file_and_columns(shop: Path):
    cat = write_csv(shop / "c.csv", [{"foo": "1", "bar": "x"}], columns=["foo", "bar"])
    with pytest.raises(
        CatalogError, match=r"c\.csv: cannot detect the product id column among \['foo', 'bar'\].*--mapping"
    ):
        read_catalog(cat)


@pytest.mark.parametrize("name", ["c.xlsx", "missing.csv"])
def test_unsupported_or_missing_file(shop: Path, name: str):
    if name.endswith(".xlsx"):
        (shop / name).write_bytes(b"PK")
    with pytest.raises(CatalogError, match=name.replace(".", r"\.")):
        read_catalog(shop / name)


def test_problem_report_and_summary(tmp_path: Path, shop: Path):
    cat = write_csv(shop / "catalog.csv", bad_rows(shop))
    res = read_catalog(cat, MAPPING)
    out = write_problem_report(res, tmp_path / "index" / "ingest_report.json")
    report = json.loads(out.read_text())
    assert (report["source"], report["rows"], report["accepted"], report["rejected"]) == (str(cat), 15, 4, 11)
    assert report["by_kind"]["image path escapes the catalog folder"] == 3
    assert [p["row"] for p in report["problems"]] == [r for r, k in EXPECTED.items() if k is not None]
    assert report["mapping"]["image"] == "image"
    assert not list(out.parent.glob(".*tmp*"))  # atomic write left no temp file
    text = summarize_problems(res.problems, show=2)
    assert text.startswith("11 rows rejected: 3 image path escapes the catalog folder, 1 missing id")
    assert "row 2, field 'id': missing id" in text and "... and 9 more" in text
    assert summarize_problems([]) == "no rows rejected"
