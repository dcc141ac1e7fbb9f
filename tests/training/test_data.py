from __future__ import annotations

import random

import pytest

from prodsearch.catalog.schema import Product
from prodsearch.errors import CatalogError
from prodsearch.training.data import build_pairs, sample_text_indices, split_pairs, text_variants


def _p(i, title, img, **attrs):
    return Product(id=str(i), title=title, attributes=attrs, image_path=f"/x/{i}.jpg", image_hash=img)


def test_text_variants_title_first_then_attribute_phrases():
    p = _p(1, "Navy shirt", "h", gender="Men", colour="Navy Blue", type="Shirts", year="2012", usage="Casual")
    v = text_variants(p, 4, seed=0)
    assert v[0] == "Navy shirt"
    assert v[1] == "Men Navy Blue Shirts Casual"  # numeric year left out, column order kept
    assert len(v) == 4 and len(set(v)) == 4
    assert v == text_variants(p, 4, seed=0)  # deterministic
    assert text_variants(_p(2, "t", "h"), 4) == ["t"]


def test_too_few_pairs_is_one_clear_error():
    prods = [_p(i, "t", f"h{i}") for i in range(3)] + [Product(id="9", title="x")]
    with pytest.raises(CatalogError, match="3 valid .* pairs out of 4"):
        build_pairs(prods, min_pairs=8)


def test_a_catalog_without_photos_or_titles_says_which_column_is_missing():
    text_only = [Product(id=str(i), title=f"shirt {i}") for i in range(20)]
    with pytest.raises(CatalogError, match="none of the 20 products has a photo.*image column"):
        build_pairs(text_only)
    untitled = [_p(i, " ", f"h{i}") for i in range(20)]
    with pytest.raises(CatalogError, match="none of the 20 products has a title"):
        build_pairs(untitled)


def test_split_has_no_title_or_photo_leakage():
    rng = random.Random(0)
    prods = []
    for i in range(600):
        title = f"title {rng.randint(0, 400)}"  # many shared titles
        img = f"img{rng.randint(0, 60)}" if rng.random() < 0.15 else f"own{i}"  # some shared photos
        prods.append(_p(i, title, img))
    pairs = build_pairs(prods, n_variants=1)
    split = split_pairs(pairs, 0.15, 0.15, seed=3)
    assert sorted(sum(split.values(), [])) == list(range(600))
    sides = {}
    for name, idx in split.items():
        for i in idx:
            for key in (("t", pairs.title_group[i]), ("i", pairs.image_group[i])):
                assert sides.setdefault(key, name) == name, f"{key} leaks across {sides[key]} and {name}"
    assert 60 <= len(split["val"]) <= 140 and 60 <= len(split["test"]) <= 140
    shared_title = sum(1 for i in split["test"] if pairs.title_group.count(pairs.title_group[i]) > 1)
    assert shared_title > 10  # the test exercises grouped items, not only singletons
    # deterministic and independent of row order
    again = split_pairs(build_pairs(list(reversed(prods)), n_variants=1), 0.15, 0.15, seed=3)
    ids = lambda ps, s: sorted(ps.ids[i] for i in s)  # noqa: E731
    rev = build_pairs(list(reversed(prods)), n_variants=1)
    assert ids(pairs, split["test"]) == ids(rev, again["test"])


def test_title_case_and_space_insensitive_groups():
    pairs = build_pairs(
        [_p(1, "Red  Shirt", "a"), _p(2, "red shirt", "b")] + [_p(i, f"x{i}", f"c{i}") for i in range(3, 10)]
    )
    assert pairs.title_group[0] == pairs.title_group[1]


def test_sample_text_indices_respects_title_prob():
    pairs = build_pairs(
        [_p(i, f"t{i}", f"h{i}", a="Red", b="Shirt", c="Men") for i in range(10)], n_variants=3
    )
    assert sample_text_indices(pairs, range(10), random.Random(0), 1.0) == [0] * 10
    assert all(v > 0 for v in sample_text_indices(pairs, range(10), random.Random(0), 0.0))


def test_near_unique_attribute_columns_are_not_phrased():
    prods = [
        _p(i, f"t{i}", f"h{i}", colour=["Red", "Blue"][i % 2], sku=f"ab{i:04x}cdef9876") for i in range(30)
    ]
    pairs = build_pairs(prods, n_variants=3)
    assert pairs.texts[0] == ["t0", "Red"] and pairs.texts[1] == ["t1", "Blue"]
