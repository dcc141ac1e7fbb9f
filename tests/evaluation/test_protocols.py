"""Protocol builders on a tiny catalog: the right relevant sets, queries only from the test split,
seeded and repeatable; the training split leaks no title or photo into the test split."""

from __future__ import annotations

import numpy as np
import pytest
from eval_helpers import TINY, make_products

from prodsearch.evaluation import protocols as P
from prodsearch.evaluation.augment import AugmentedPhotos
from prodsearch.evaluation.corpus import Corpus, SplitParams, split_test_positions
from prodsearch.evaluation.fields import FieldChoice

FIELDS = FieldChoice(type="type", colour="colour", attributes=["colour", "gender"])


def _relevant(qs: P.QuerySet, q: int, j: int = 0) -> dict[int, int]:
    g = qs.judgements[j].qrels.dense(q)
    if qs.judgements[j].eligible is not None:
        g = g * qs.judgements[j].eligible
    return {int(i): int(g[i]) for i in np.nonzero(g)[0]}


def test_title2image_relevant_is_every_identical_title(tiny_corpus):
    qs = P.title2image(tiny_corpus, seed=0)
    assert qs.kind == "text2image"
    assert sorted(qs.queries) == ["Blue Jeans C", "Green Bag F", "Red Shirt A"]  # distinct titles
    assert set(qs.source.tolist()) <= set(tiny_corpus.test.tolist())
    for q, title in enumerate(qs.queries):
        expected = {i: 1 for i, p in enumerate(tiny_corpus.products) if p.title == title}
        assert _relevant(qs, q) == expected
    assert _relevant(qs, qs.queries.index("Red Shirt A")) == {0: 1, 1: 1}
    assert len(P.title2image(tiny_corpus, max_queries=2).queries) == 2


def test_title2image_only_photos_count(tiny_products):
    tiny_products[1].image_path = None  # p1 shares p0's title but has no photo: cannot be found
    corpus = Corpus(tiny_products, test=np.asarray([0, 1, 3]))
    qs = P.title2image(corpus)
    assert _relevant(qs, qs.queries.index("Red Shirt A")) == {0: 1}


def test_attribute_queries_grades(tiny_corpus):
    qs = P.attribute_queries(tiny_corpus, FIELDS, seed=0)
    assert set(qs.source.tolist()) <= set(tiny_corpus.test.tolist())
    assert len(set(t.lower() for t in qs.queries)) == len(qs.queries)
    for q, text in enumerate(qs.queries):
        *attrs, typ = text.split()  # every value in the tiny catalog is one distinct word
        src = tiny_corpus.products[qs.source[q]].attributes
        assert typ == src["type"] and all(a in src.values() for a in attrs) and 1 <= len(attrs) <= 2
        expected = {}
        for i, p in enumerate(tiny_corpus.products):
            if p.attributes["type"] == typ:
                expected[i] = 2 if all(a in p.attributes.values() for a in attrs) else 1
        assert _relevant(qs, q) == expected, text
    assert qs.judgements[0].rel_level == 2


def test_attribute_queries_seeded(tiny_corpus):
    a = P.attribute_queries(tiny_corpus, FIELDS, seed=1)
    b = P.attribute_queries(tiny_corpus, FIELDS, seed=1)
    assert a.queries == b.queries and a.source.tolist() == b.source.tolist()
    seeds = {tuple(P.attribute_queries(tiny_corpus, FIELDS, seed=s).queries) for s in range(6)}
    assert len(seeds) > 1


def test_attribute_queries_need_a_type(tiny_corpus):
    with pytest.raises(P.ProtocolSkipped, match="type"):
        P.attribute_queries(tiny_corpus, FieldChoice(type=None, colour="colour"))


def test_image_queries_relevance_and_augmentation(tmp_path):
    rows = list(TINY)
    rows[7] = ("p7", "Red Bag G", "Bag", "Red", "Women", 6)  # p7 reuses p6's photo (same file content)
    products = make_products(tmp_path / "photos", rows)
    corpus = Corpus(products, test=np.asarray([0, 6]))
    qs = P.image_queries(corpus, FIELDS, seed=0)
    assert qs.kind == "image" and sorted(qs.source.tolist()) == [0, 6]
    q6 = qs.source.tolist().index(6)
    assert _relevant(qs, q6) == {6: 1, 7: 1}  # the identical photo counts as the same product
    assert _relevant(qs, q6, j=1) == {6: 1}  # same type and colour: Bag + Green
    q0 = qs.source.tolist().index(0)
    assert _relevant(qs, q0, j=1) == {0: 1, 1: 1}
    img = qs.queries[q0]
    again = P.image_queries(corpus, FIELDS, seed=0).queries[q0]
    assert np.array_equal(np.asarray(img), np.asarray(again))  # same seed, same query photo


def test_composed_queries_ask_for_another_colour_of_the_type(tiny_corpus):
    qs = P.composed_queries(tiny_corpus, FIELDS, seed=0)
    assert qs.kind == "text+image"
    # p3 (Jeans) is skipped: no other jeans colour in the catalog
    assert sorted(qs.source.tolist()) == [0, 1, 6]
    by_source = dict(zip(qs.source.tolist(), range(len(qs)), strict=True))
    for pos, colour, relevant in ((0, "blue", {2: 1}), (1, "blue", {2: 1}), (6, "red", {7: 1})):
        text, photo = qs.queries[by_source[pos]]
        assert (text, photo) == (colour, tiny_corpus.products[pos].image_path)
        assert _relevant(qs, by_source[pos]) == relevant  # the type in that colour, never the source
    # only products with a photo are found by a photo-anchored search, so only they make a colour
    tiny_corpus.products[2].image_path = None
    tiny_corpus.has_image[2] = False
    assert sorted(P.composed_queries(tiny_corpus, FIELDS, seed=0).source.tolist()) == [6]
    with pytest.raises(P.ProtocolSkipped, match="type and a colour"):
        P.composed_queries(tiny_corpus, FieldChoice(type="type", colour=None))


def test_augmented_photos_are_lazy_and_seeded(tiny_products):
    paths = [p.image_path for p in tiny_products[:3]]
    a, b = AugmentedPhotos(paths, seed=0), AugmentedPhotos(paths, seed=1)
    sizes = {a[i].size for i in range(3)} | {b[i].size for i in range(3)}
    assert all(w <= 40 and h <= 48 for w, h in sizes)  # cropped and/or downscaled, never enlarged
    assert np.array_equal(np.asarray(a[2]), np.asarray(a[2:3][0]))  # batching does not change item i
    assert any(a[i].size != b[i].size for i in range(3))


def test_protocols_skip_with_reason(tiny_products):
    empty = Corpus(tiny_products)
    with pytest.raises(P.ProtocolSkipped, match="test split is empty"):
        P.title2image(empty)
    for p in tiny_products:
        p.image_path = None
    no_photos = Corpus(tiny_products, test=np.asarray([0, 1]))
    with pytest.raises(P.ProtocolSkipped, match="photo"):
        P.title2image(no_photos)
    with pytest.raises(P.ProtocolSkipped, match="photo"):
        P.image_queries(no_photos, FIELDS)


def test_training_split_keeps_titles_and_photos_out_of_training(tmp_path):
    rows = []
    for i in range(60):  # 3 products per title, 2 per photo: photos link title groups in pairs
        rows.append((f"q{i}", f"Title {i // 3}", "Shirt", "Red", "Men", i % 8))
    products = make_products(tmp_path / "p", rows)
    for i, p in enumerate(products):
        p.image_hash = f"h{i // 2}"
    test = set(split_test_positions(products, SplitParams(test_fraction=0.2, seed=0)).tolist())
    assert 0 < len(test) < len(products)
    rest = [p for i, p in enumerate(products) if i not in test]
    test_titles = {products[i].title.lower() for i in test}
    test_photos = {products[i].image_hash for i in test}
    assert not any(p.title.lower() in test_titles or p.image_hash in test_photos for p in rest)
    corpus = Corpus(products, test=np.asarray(sorted(test)))
    qs = P.title2image(corpus)
    assert set(qs.source.tolist()) <= test
