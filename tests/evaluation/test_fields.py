"""Choosing the type / colour / attribute fields generically (several languages, data shape)."""

from __future__ import annotations

import pytest

from prodsearch.catalog.schema import Product
from prodsearch.errors import ConfigError
from prodsearch.evaluation.fields import clean_value, resolve_fields


def _products(rows: list[dict[str, str]]) -> list[Product]:
    return [Product(id=str(i), title=f"t{i}", attributes=r) for i, r in enumerate(rows)]


def test_fashion_like_columns():
    # type determines both category levels; "year" is numeric; "season" and "gender" are free
    types = {
        "Shirts": ("Apparel", "Topwear"),
        "Jeans": ("Apparel", "Bottomwear"),
        "Heels": ("Footwear", "Shoes"),
        "Flats": ("Footwear", "Shoes"),
    }
    rows = []
    for i in range(40):
        t = list(types)[i % 4]
        rows.append(
            {
                "gender": ["Men", "Women"][(i // 4) % 2],
                "masterCategory": types[t][0],
                "subCategory": types[t][1],
                "articleType": t,
                "baseColour": ["Red", "Blue", "Black"][i % 3],
                "season": ["Summer", "Winter", "Fall"][i % 3 if i % 5 else 0],
                "year": str(2010 + i % 5),
            }
        )
    choice = resolve_fields(_products(rows))
    assert choice.type == "articleType"  # "type" beats "category"
    assert choice.colour == "baseColour"
    # colour first, then the audience hint; parent categories (functions of the type) and numbers excluded
    assert choice.attributes == ["baseColour", "gender", "season"]
    assert choice.how == {"type": "heuristic", "colour": "heuristic", "attributes": "heuristic"}


@pytest.mark.parametrize(
    "names",
    [
        ("Produktkategorie", "Grundfarbe", "Geschlecht"),  # German compounds
        ("catégorie", "couleur", "genre"),  # French
        ("product_type", "color_name", "audience"),  # snake_case English
    ],
)
def test_multilingual_name_hints(names):
    typ, col, aud = names
    rows = [{typ: f"T{i % 5}", col: f"C{i % 3}", aud: f"A{i % 2}", "sku": f"S{i}"} for i in range(30)]
    choice = resolve_fields(_products(rows))
    assert (choice.type, choice.colour) == (typ, col)
    assert choice.attributes[:2] == [col, aud]
    assert "sku" not in choice.attributes  # near-unique column: too many values to be an attribute


def test_user_choices_win_and_unknown_names_fail():
    rows = [{"kind": f"K{i % 3}", "shade": f"S{i % 2}"} for i in range(10)]
    choice = resolve_fields(_products(rows), type_field="shade", colour_field=None, attr_fields=["kind"])
    assert choice.type == "shade" and choice.attributes == ["kind"] and choice.how["type"] == "user"
    with pytest.raises(ConfigError, match="'size'.*attribute columns: \\['kind', 'shade'\\]"):
        resolve_fields(_products(rows), type_field="size")
    with pytest.raises(ConfigError, match="'nope'"):
        resolve_fields(_products(rows), attr_fields=["nope"])


def test_no_usable_field():
    rows = [{"sku": f"S{i}", "price": str(i)} for i in range(10)]
    choice = resolve_fields(_products(rows))
    assert choice.type is None and choice.colour is None and choice.attributes == []


def test_missing_values():
    assert clean_value("  NA ") is None and clean_value("") is None and clean_value(None) is None
    assert clean_value(" Navy Blue ") == "Navy Blue"
