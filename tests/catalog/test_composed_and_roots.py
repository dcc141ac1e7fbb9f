"""Composed title/text fields (templates and lists) and an explicit image root (issue 11, items 1-2)."""

from __future__ import annotations

from pathlib import Path

import pytest
from catalog_fixtures import make_jpeg, write_csv

from prodsearch.catalog import load_mapping, mapping_from_dict, read_catalog
from prodsearch.catalog.mapping import compile_field, template_columns
from prodsearch.catalog.validate import problem_kind
from prodsearch.errors import CatalogError

FURNITURE = ["sku", "name", "type", "colour", "description", "image"]


def furniture_rows(image_dir: str = "photos") -> list[dict[str, str]]:
    return [
        {"sku": "1", "name": "HEMNES", "type": "Bookcase", "colour": "white stain", "description": "solid pine",
         "image": f"{image_dir}/1.jpg"},
        {"sku": "2", "name": "BILLY", "type": "", "colour": "birch effect", "description": "",
         "image": f"{image_dir}/2.jpg"},
        {"sku": "3", "name": "", "type": "", "colour": "", "description": "no name", "image": f"{image_dir}/1.jpg"},
    ]  # fmt: skip


def test_template_columns_and_rendering():
    assert template_columns("{name} {type}") == ["name", "type"]
    assert template_columns("name") == ["name"]
    render = compile_field("{name} {type} ({colour})", ["name", "type", "colour"])
    assert render([" HEMNES ", "Bookcase", "white"]) == "HEMNES Bookcase (white)"
    assert render(["BILLY", "", "birch"]) == "BILLY (birch)"  # an empty part leaves no double space
    for bad, words in [("{name", "malformed"), ("{name:>10}", "malformed"), ("{}", "malformed")]:
        with pytest.raises(CatalogError, match=words):
            template_columns(bad)


def test_mapping_accepts_templates_and_lists_for_title_and_text():
    m = mapping_from_dict(
        {"id": "sku", "title": ["name", "type"], "text": ["description", "{colour} finish"]}
    )
    assert m.title == "{name} {type}" and m.text == ["description", "{colour} finish"]
    assert mapping_from_dict({"id": "sku", "title": "{name} {type}"}).title == "{name} {type}"
    for bad in ([], [""], 3, "{name"):
        with pytest.raises(CatalogError, match="'title'"):
            mapping_from_dict({"id": "sku", "title": bad})


def test_catalog_with_a_composed_title(tmp_path: Path):
    shop = tmp_path / "shop"
    make_jpeg(shop / "photos" / "1.jpg")
    make_jpeg(shop / "photos" / "2.jpg", (20, 20, 200))
    csv_path = write_csv(shop / "catalog.csv", furniture_rows(), columns=FURNITURE)
    (shop / "mapping.toml").write_text(
        'id = "sku"\ntitle = "{name} {type}"\ntext = ["description", "{colour} finish"]\n'
        'attributes = ["type", "colour"]\nimage = "image"\n'
    )
    res = read_catalog(csv_path, load_mapping(shop / "mapping.toml"))
    assert [(p.id, p.title) for p in res.products] == [("1", "HEMNES Bookcase"), ("2", "BILLY")]
    assert res.products[0].text == {"description": "solid pine", "{colour} finish": "white stain finish"}
    assert res.products[0].full_text().startswith("HEMNES Bookcase")
    assert [(p.row, p.field, p.reason) for p in res.problems] == [(3, "{name} {type}", "empty title")]


def test_template_naming_a_missing_column_names_it(tmp_path: Path):
    csv_path = write_csv(tmp_path / "catalog.csv", furniture_rows(), columns=FURNITURE)
    with pytest.raises(CatalogError, match=r"title='kind'"):
        read_catalog(csv_path, mapping_from_dict({"id": "sku", "title": "{name} {kind}"}), check_images=False)


@pytest.fixture
def derived(tmp_path: Path) -> tuple[Path, Path]:
    """Photos in ``tmp_path/photos``; a derived CSV in ``tmp_path/derived`` naming them by relative path."""
    photos = tmp_path / "photos"
    make_jpeg(photos / "1.jpg")
    make_jpeg(photos / "2.jpg", (20, 20, 200))
    rows = [{**r, "image": r["image"].removeprefix("photos/")} for r in furniture_rows("photos")[:2]]
    return write_csv(tmp_path / "derived" / "catalog.csv", rows, columns=FURNITURE), photos


def test_without_an_image_root_photos_elsewhere_are_refused_with_a_hint(derived):
    csv_path, photos = derived
    res = read_catalog(csv_path, mapping_from_dict({"id": "sku", "title": "name", "image": "image"}))
    assert res.products == [] and {problem_kind(p.reason) for p in res.problems} == {"image file not found"}
    abs_rows = [{"sku": "1", "name": "A", "image": str(photos / "1.jpg")}]
    abs_csv = write_csv(csv_path.parent / "abs.csv", abs_rows, columns=["sku", "name", "image"])
    res = read_catalog(abs_csv, mapping_from_dict({"id": "sku", "title": "name", "image": "image"}))
    assert problem_kind(res.problems[0].reason) == "image path escapes the catalog folder"
    assert "image_root" in res.problems[0].reason  # tells the user what to do


def test_image_root_argument_and_mapping_key_confine_to_that_folder(derived, tmp_path: Path):
    csv_path, photos = derived
    mapping = mapping_from_dict({"id": "sku", "title": "name", "image": "image"})
    res = read_catalog(csv_path, mapping, image_root=photos)
    assert [p.id for p in res.products] == ["1", "2"]
    assert res.products[0].image_path == str((photos / "1.jpg").resolve())
    assert res.mapping.image_root == str(photos)  # what was used is recorded with the index

    # in a mapping file, a relative image_root resolves against the mapping file's folder
    (csv_path.parent / "m.toml").write_text(
        'id = "sku"\ntitle = "name"\nimage = "image"\nimage_root = "../photos"\n'
    )
    res = read_catalog(csv_path, load_mapping(csv_path.parent / "m.toml"))
    assert [p.id for p in res.products] == ["1", "2"]

    # the root confines: a path leaving it is refused even though the file exists
    make_jpeg(tmp_path / "secret.jpg")
    bad = write_csv(csv_path.parent / "bad.csv", [{"sku": "9", "name": "x", "image": "../secret.jpg"}],
                    columns=["sku", "name", "image"])  # fmt: skip
    res = read_catalog(bad, mapping, image_root=photos)
    assert problem_kind(res.problems[0].reason) == "image path escapes the image root"
    with pytest.raises(CatalogError, match="not a folder"):
        read_catalog(csv_path, mapping, image_root=tmp_path / "nope")
