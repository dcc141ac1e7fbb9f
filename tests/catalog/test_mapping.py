"""Column mappings: loading from TOML/YAML/JSON and detection from names and values."""

from __future__ import annotations

from pathlib import Path

import pytest

from prodsearch.catalog import ColumnMapping, detect_mapping, load_mapping
from prodsearch.catalog.mapping import detect_mapping_report, normalize_name
from prodsearch.errors import CatalogError

FASHION_HEADER = [
    "id", "image", "gender", "masterCategory", "subCategory", "articleType", "baseColour", "season", "year",
    "usage", "productDisplayName", "width", "height", "pixel_md5",
]  # fmt: skip


def _fashion_rows(n: int = 200) -> list[list[str]]:
    genders, colours, types = (
        ["Men", "Women", "Unisex"],
        ["Blue", "Red", "NA", "Black"],
        ["Tshirts", "Shoes", "Watches"],
    )
    return [
        [str(1000 + i), f"images/{1000 + i}.jpg", genders[i % 3], "Apparel", "Topwear", types[i % 3], colours[i % 4],
         "Summer", str(2010 + i % 5), "Casual", f"Brand {i} Product", "60", "80", f"{i:032x}"]
        for i in range(n)
    ]  # fmt: skip


def test_normalize_name():
    assert {
        normalize_name(n) for n in ["Product_ID", "product-id", "productId", "Product Id", "PRODUCT.ID"]
    } == {"productid"}
    assert normalize_name("Référence") == "reference" and normalize_name("Descripción") == "descripcion"


def test_detects_the_fashion_header():
    m = detect_mapping(FASHION_HEADER, sample_rows=_fashion_rows())
    assert m == ColumnMapping(
        id="id",
        title="productDisplayName",
        text=[],
        attributes=[
            "gender",
            "masterCategory",
            "subCategory",
            "articleType",
            "baseColour",
            "season",
            "year",
            "usage",
        ],
        image="image",
    )


def test_detects_from_a_dataframe():
    import pandas as pd

    df = pd.DataFrame(_fashion_rows(), columns=FASHION_HEADER)
    assert detect_mapping(df) == detect_mapping(FASHION_HEADER, sample_rows=_fashion_rows())


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        (["SKU", "Product Name", "Description", "Brand", "Image_Path", "Colour"],
         ColumnMapping("SKU", "Product Name", ["Description", "Brand"], ["Colour"], "Image_Path")),
        (["item-id", "title", "bullet_points", "photo", "size"],
         ColumnMapping("item-id", "title", ["bullet_points"], ["size"], "photo")),
        (["asin", "product_title", "filename", "category"],
         ColumnMapping("asin", "product_title", [], ["category"], "filename")),
        (["Référence", "Titre", "Description", "Marque", "Couleur", "Photo"],  # French
         ColumnMapping("Référence", "Titre", ["Description", "Marque"], ["Couleur"], "Photo")),
        (["Artikelnummer", "Bezeichnung", "Beschreibung", "Farbe", "Bild"],  # German
         ColumnMapping("Artikelnummer", "Bezeichnung", ["Beschreibung"], ["Farbe"], "Bild")),
        (["codigo", "nombre", "descripción", "color"],  # Spanish, no image column: text only
         ColumnMapping("codigo", "nombre", ["descripción"], ["color"], None)),
    ],
)  # fmt: skip
def test_detects_naming_styles_without_samples(columns, expected):
    assert detect_mapping(columns) == expected


def test_value_checks_choose_attributes():
    columns = ["id", "name", "kind", "price", "weight_g", "sha", "notes", "url", "empty", "ean"]
    rows = [
        {"id": f"p{i}", "name": f"Thing {i}", "kind": ["a", "b", "c"][i % 3], "price": f"{i}.99",
         "weight_g": str(100 + i % 7), "sha": f"{i * 7919:040x}", "notes": f"free text note number {i} about this thing",
         "url": f"http://x/{i % 2}", "empty": "", "ean": str(4000000000000 + i)}
        for i in range(120)
    ]  # fmt: skip
    m = detect_mapping(columns, sample_rows=rows)
    # kind and weight_g are categorical; price is a decimal measure; sha is a digest; notes is long free
    # text; url is technical; empty has no values; ean is near-unique (120 distinct > max(50, 6))
    assert m.attributes == ["kind", "weight_g"]
    assert m.text == ["notes"]
    assert (m.id, m.title, m.image) == ("id", "name", None)


def test_cardinality_cap_grows_with_the_sample():
    # long labels (6 words) are not "short values": only the cardinality cap max(50, 5% of rows) applies
    def rows(n: int, distinct: int) -> list[dict[str, str]]:
        return [
            {"id": str(i), "title": "t", "note": f"a longer label number {i % distinct} here"}
            for i in range(n)
        ]

    assert detect_mapping(["id", "title", "note"], sample_rows=rows(1000, 60)).attributes == []  # cap 50
    assert detect_mapping(["id", "title", "note"], sample_rows=rows(1200, 60)).attributes == [
        "note"
    ]  # cap 60


def test_short_repeated_values_are_attributes_whatever_their_name():
    # a furniture catalog: free-text colours and types, 60 distinct each over 300 rows (over the cap of 50)
    rows = [
        {"sku": str(i), "name": f"N{i}", "typ": f"Möbel {i % 60}", "färg": f"white stained oak {i % 60}",
         "maße": f"{i}x{i + 1} cm"}
        for i in range(300)
    ]  # fmt: skip
    report = detect_mapping_report(list(rows[0]), rows)
    assert report.mapping.attributes == ["typ", "färg"]
    assert report.used["typ"].startswith("attribute: short values, 60 distinct")
    assert list(report.ignored) == ["maße"] and "300 distinct" in report.ignored["maße"]


def test_detection_report_names_every_column_and_suggests_an_editable_mapping(tmp_path):
    rows = [
        {**r, "url": "http://x", "notes": ""}
        for r in (dict(zip(FASHION_HEADER, v, strict=True)) for v in _fashion_rows())
    ]
    report = detect_mapping_report(list(rows[0]), rows)
    assert set(report.used) | set(report.ignored) == set(rows[0])
    assert report.ignored == {
        "width": "technical column name", "height": "technical column name", "pixel_md5": "technical column name",
        "url": "technical column name", "notes": "empty in the sample",
    }  # fmt: skip
    assert report.used["productDisplayName"] == "title: its name"
    assert "ignored 'notes': empty in the sample" in report.summary()
    (tmp_path / "m.toml").write_text(report.to_toml("styles.csv"))
    assert load_mapping(tmp_path / "m.toml") == report.mapping  # the suggestion loads back as is


def test_image_column_found_by_its_values():
    rows = [{"id": str(i), "title": "t", "pic_ref": f"media/{i}.PNG", "kind": "x"} for i in range(10)]
    assert detect_mapping(["id", "title", "pic_ref", "kind"], sample_rows=rows).image == "pic_ref"


def test_missing_title_column_lists_what_was_found_and_expected():
    with pytest.raises(CatalogError) as err:
        detect_mapping(["sku", "price", "colour"])
    msg = str(err.value)
    assert "title column among ['sku', 'price', 'colour']" in msg and "'productdisplayname'" in msg
    assert "--mapping" in msg


def test_duplicate_column_names_are_an_error():
    with pytest.raises(CatalogError, match=r"duplicate column name\(s\) \['a'\]"):
        detect_mapping(["id", "title", "a", "a"])


@pytest.mark.parametrize(
    ("name", "body"),
    [
        (
            "m.toml",
            'id = "sku"\ntitle = "name"\ntext = ["desc"]\nattributes = ["colour", "size"]\nimage = "photo"\n',
        ),
        ("m.yaml", "id: sku\ntitle: name\ntext: desc\nattributes: [colour, size]\nimage: photo\n"),
        (
            "m.json",
            '{"id": "sku", "title": "name", "text": ["desc"], "attributes": ["colour", "size"], "image": "photo"}',
        ),
    ],
)
def test_load_mapping_formats(tmp_path: Path, name: str, body: str):
    (tmp_path / name).write_text(body, encoding="utf-8")
    assert load_mapping(tmp_path / name) == ColumnMapping(
        "sku", "name", ["desc"], ["colour", "size"], "photo"
    )


@pytest.mark.parametrize(
    ("body", "pattern"),
    [
        ('id = "sku"\ntitle = "name"\ncolour = "c"\n', r"m\.toml: unknown key\(s\) \['colour'\]"),
        ('id = "sku"\n', r"m\.toml: missing required key 'title'"),
        ('title = "name"\n', r"m\.toml: missing required key 'id'"),
        ('id = "sku"\ntitle = "name"\nattributes = 3\n', r"m\.toml: key 'attributes' must be .* got 3"),
        ('id = "sku"\ntitle = \n', r"m\.toml: cannot parse column mapping"),
    ],
)
def test_load_mapping_errors_name_the_file_and_key(tmp_path: Path, body: str, pattern: str):
    (tmp_path / "m.toml").write_text(body, encoding="utf-8")
    with pytest.raises(CatalogError, match=pattern):
        load_mapping(tmp_path / "m.toml")


def test_load_mapping_unknown_format_and_missing_file(tmp_path: Path):
    (tmp_path / "m.ini").write_text("x", encoding="utf-8")
    with pytest.raises(CatalogError, match=r"m\.ini: unsupported column-mapping format '\.ini'"):
        load_mapping(tmp_path / "m.ini")
    with pytest.raises(CatalogError, match="not found"):
        load_mapping(tmp_path / "nope.toml")
