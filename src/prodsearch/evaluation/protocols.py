"""Retrieval protocols: each builds a :class:`QuerySet` (queries drawn, seeded, from the test split,
plus their relevance judgements over the whole catalog) that every system is scored on.

* ``title2image``: the Marqo-FashionCLIP leaderboard protocol: up to 2,000 distinct test titles;
  documents = the image vectors of the whole catalog; relevant = every product with the identical
  title; recall@1, recall@10, MRR.
* ``attributes``: queries composed from a test product's attribute values ("{colour} {type}",
  "{audience} {colour} {type}"...); graded relevance: 2 when every requested attribute matches,
  1 when only the type does; nDCG@10 (graded), recall@50, mAP@100 and precision@10 (grade 2 relevant).
* ``image2product``: an augmented photo of a test product (crop, flip, downscale, JPEG); hit@1/@10
  and MRR of the same product (products with the byte-identical photo count as the same product),
  and precision@10 of products with the same type and colour.
* ``composed``: "like this, but <colour>": the photo of a test product A plus a colour word c (one
  of the colours A's type comes in, not A's own); relevant = every product with a photo of A's type
  in colour c; nDCG@10, hit@10, precision@10. Queries are ``(text, photo path)`` pairs.

The zero-shot classification protocol lives in :mod:`prodsearch.evaluation.zeroshot`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from prodsearch.evaluation.augment import AugmentedPhotos
from prodsearch.evaluation.corpus import Corpus
from prodsearch.evaluation.fields import FieldChoice
from prodsearch.evaluation.qrels import AttributeQrels, Judgement, LabelQrels

PROTOCOLS = ("title2image", "attributes", "image2product", "composed", "zeroshot")
#: Ranked-list depth every system returns (MRR and mAP are computed within it).
DEPTH = 100


class ProtocolSkipped(Exception):
    """A protocol cannot run on this catalog; ``str(err)`` is the reason shown in the report."""


@dataclass
class QuerySet:
    """Queries of one protocol. ``kind``: "text2image" (text queries ranked against image vectors only),
    "text" (text queries, any signal), "image" (photo queries) or "text+image" (``(text, photo)``
    pairs). ``source`` (Q,): corpus position of
    the product each query was made from (for slicing and examples)."""

    protocol: str
    kind: str
    queries: Any  # list[str] or a lazy sequence of PIL images
    source: np.ndarray
    judgements: list[Judgement]
    depth: int = DEPTH
    info: dict[str, Any] = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)  # human-readable query text (examples in the report)

    def __len__(self) -> int:
        return len(self.source)


def _codes(values: list[str | None]) -> np.ndarray:
    """Integer code per value (-1 for missing), codes in first-seen order."""
    table: dict[str, int] = {}
    return np.asarray([-1 if v is None else table.setdefault(v, len(table)) for v in values], dtype=np.int64)


def _pair_keys(types: list[str | None], colours: list[str | None]) -> list[str | None]:
    """One key per (type, colour) pair of values (None where either is missing)."""
    return [
        f"{a}\x1f{b}" if a is not None and b is not None else None
        for a, b in zip(types, colours, strict=True)
    ]


def _shuffled(positions: np.ndarray, seed: int, salt: int) -> np.ndarray:
    rng = np.random.default_rng([seed, salt])
    return positions[rng.permutation(len(positions))]


def _require_test(corpus: Corpus, what: str) -> None:
    if len(corpus.test) == 0:
        raise ProtocolSkipped(f"{what}: the test split is empty (catalog too small?)")


def distinct_title_queries(
    titles: list[str], candidates: np.ndarray, *, max_queries: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The title->image queries: ``(query positions (Q,), title label of every item (N,))``.

    Labels are exact (whitespace-stripped) titles; the candidates are shuffled with ``seed`` and the
    first product of each distinct title is a query, up to ``max_queries``. ``prodsearch train``
    scores its validation and test splits with this same function, so both report one protocol.
    """
    labels = _codes([t.strip() for t in titles])
    seen: set[int] = set()
    source = []
    for pos in _shuffled(np.sort(np.asarray(candidates, dtype=np.int64)), seed, 1).tolist():
        if labels[pos] not in seen:
            seen.add(labels[pos])
            source.append(pos)
            if len(source) >= max_queries:
                break
    return np.asarray(source, dtype=np.int64), labels


def title2image(corpus: Corpus, *, max_queries: int = 2000, seed: int = 0) -> QuerySet:
    """Distinct test-split titles (of products with a photo) -> image vectors of the whole catalog."""
    _require_test(corpus, "title2image")
    if not corpus.has_image.any():
        raise ProtocolSkipped("title2image: no product has a photo (the mapping has no image column?)")
    titles = [p.title.strip() for p in corpus.products]
    cand = corpus.test[corpus.has_image[corpus.test]]
    if len(cand) == 0:
        raise ProtocolSkipped("title2image: no test product has a photo")
    src, labels = distinct_title_queries(titles, cand, max_queries=max_queries, seed=seed)
    source = src.tolist()
    qrels = LabelQrels(labels, labels[src])
    judgement = Judgement(qrels, ["recall@1", "recall@10", "mrr"], eligible=corpus.has_image, curve=True)
    queries = [titles[i] for i in source]
    return QuerySet(
        "title2image",
        "text2image",
        queries,
        src,
        [judgement],
        labels=queries,
        info={"queries": len(src), "documents": int(corpus.has_image.sum())},
    )


def attribute_queries(
    corpus: Corpus,
    fields: FieldChoice,
    *,
    max_queries: int = 2000,
    seed: int = 0,
    max_attrs_per_query: int = 2,
) -> QuerySet:
    """Queries "{attr...} {type}" from test products' attribute values, graded 2 / 1 / 0."""
    _require_test(corpus, "attributes")
    if fields.type is None:
        raise ProtocolSkipped(
            "attributes: no attribute column looks like a product type (name one with type_field / --type-field)"
        )
    names = [fields.type, *[f for f in fields.attributes if f != fields.type]]
    columns = [corpus.attribute(n) for n in names]
    codes = np.stack([_codes(c) for c in columns], axis=1)  # (N, F)
    rng = np.random.default_rng([seed, 2])
    seen: set[str] = set()
    source, requests, texts, templates = [], [], [], {}
    for pos in _shuffled(np.sort(corpus.test), seed, 3).tolist():
        if codes[pos, 0] < 0:
            continue
        have = [f for f in range(1, len(names)) if codes[pos, f] >= 0]
        n_pick = int(rng.integers(1, min(max_attrs_per_query, len(have)) + 1)) if have else 0
        picked = sorted(rng.choice(have, size=n_pick, replace=False).tolist()) if n_pick else []
        words = [columns[f][pos] for f in picked] + [columns[0][pos]]
        text = " ".join(words)
        if text.lower() in seen:
            continue
        seen.add(text.lower())
        source.append(pos)
        texts.append(text)
        requests.append({0: int(codes[pos, 0]), **{f: int(codes[pos, f]) for f in picked}})
        tmpl = " ".join("{" + names[f] + "}" for f in picked) + (" " if picked else "") + "{" + names[0] + "}"
        templates[tmpl] = templates.get(tmpl, 0) + 1
        if len(source) >= max_queries:
            break
    if not source:
        raise ProtocolSkipped(f"attributes: no test product has a value in the type field {fields.type!r}")
    qrels = AttributeQrels(codes, requests, type_field=0)
    judgement = Judgement(qrels, ["ndcg@10", "recall@50", "map@100", "precision@10"], rel_level=2, curve=True)
    return QuerySet(
        "attributes",
        "text",
        texts,
        np.asarray(source, dtype=np.int64),
        [judgement],
        labels=texts,
        info={"queries": len(source), "fields": names, "templates": templates},
    )


def image_queries(corpus: Corpus, fields: FieldChoice, *, max_queries: int = 2000, seed: int = 0) -> QuerySet:
    """Augmented photos of distinct test-split photos -> the same product, and same type + colour."""
    _require_test(corpus, "image2product")
    cand = corpus.test[corpus.has_image[corpus.test]]
    if len(cand) == 0:
        raise ProtocolSkipped("image2product: no test product has a photo")
    hashes = [(p.image_hash or f"path:{p.image_path}") if p.image_path else None for p in corpus.products]
    photo = _codes(hashes)
    seen: set[int] = set()
    source = []
    for pos in _shuffled(np.sort(cand), seed, 4).tolist():
        if photo[pos] not in seen:
            seen.add(photo[pos])
            source.append(pos)
            if len(source) >= max_queries:
                break
    src = np.asarray(source, dtype=np.int64)
    judgements = [
        Judgement(
            LabelQrels(photo, photo[src]), ["hit@1", "hit@10", "mrr"], eligible=corpus.has_image, curve=False
        )
    ]
    info: dict[str, Any] = {"queries": len(src), "augment": "crop+flip+downscale+jpeg"}
    if fields.type and fields.colour:
        pair = _codes(_pair_keys(corpus.attribute(fields.type), corpus.attribute(fields.colour)))
        judgements.append(Judgement(LabelQrels(pair, pair[src]), ["precision@10"], prefix="type_colour_"))
    else:
        info["type_colour_skipped"] = "needs both a type and a colour field"
    photos = AugmentedPhotos([corpus.products[i].image_path for i in source], seed=seed)
    return QuerySet(
        "image2product",
        "image",
        photos,
        src,
        judgements,
        labels=[f"photo of {corpus.products[i].id}" for i in source],
        info=info,
    )


def composed_queries(
    corpus: Corpus, fields: FieldChoice, *, max_queries: int = 2000, seed: int = 0
) -> QuerySet:
    """Photo of a test product + another colour its type comes in -> that type in that colour."""
    _require_test(corpus, "composed")
    if not (fields.type and fields.colour):
        raise ProtocolSkipped("composed: needs both a type and a colour field (type_field / colour_field)")
    t, c = corpus.attribute(fields.type), corpus.attribute(fields.colour)
    keys = [k if has else None for k, has in zip(_pair_keys(t, c), corpus.has_image, strict=True)]
    pair = _codes(keys)
    code_of = {k: int(code) for k, code in zip(keys, pair.tolist(), strict=True) if k is not None}
    colours_of: dict[str, set[str]] = {}
    for a, b, k in zip(t, c, keys, strict=True):
        if k is not None:
            colours_of.setdefault(a, set()).add(b)
    rng = np.random.default_rng([seed, 5])
    seen: set[str] = set()
    source, targets, queries, labels = [], [], [], []
    for pos in _shuffled(np.sort(corpus.test), seed, 6).tolist():
        if keys[pos] is None:
            continue
        photo = corpus.products[pos].image_hash or corpus.products[pos].image_path
        others = sorted(colours_of[t[pos]] - {c[pos]}, key=str.lower)
        if photo in seen or not others:
            continue
        seen.add(photo)
        colour = others[int(rng.integers(len(others)))]
        source.append(pos)
        targets.append(code_of[_pair_keys([t[pos]], [colour])[0]])
        queries.append((colour.lower(), corpus.products[pos].image_path))
        labels.append(f"photo of {corpus.products[pos].id} + {colour.lower()!r}")
        if len(source) >= max_queries:
            break
    if not source:
        raise ProtocolSkipped(
            f"composed: no test product's type ({fields.type!r}) comes in another colour ({fields.colour!r})"
        )
    judgement = Judgement(
        LabelQrels(pair, np.asarray(targets, dtype=np.int64)),
        ["ndcg@10", "hit@10", "precision@10"],
        eligible=corpus.has_image,
    )
    return QuerySet(
        "composed",
        "text+image",
        queries,
        np.asarray(source, dtype=np.int64),
        [judgement],
        labels=labels,
        info={"queries": len(source), "fields": [fields.type, fields.colour]},
    )
