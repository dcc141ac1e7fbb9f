"""Training pairs from catalog products, a leakage-free split, and text augmentation.

A pair is (texts of a product, its photo). Positives are defined by *groups*: products with the
same normalised title share a title group, products with the same photo (content hash) share an
image group. The split puts every connected component of "same title or same photo" on one side,
so no title or photo of the validation/test split is ever seen in training.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from prodsearch.catalog.schema import Product
from prodsearch.errors import CatalogError

log = logging.getLogger(__name__)

_NUMERIC = re.compile(r"^[\s\d.,:/%+-]*$")


def normalize_title(title: str) -> str:
    """Case- and whitespace-insensitive title key (the relevance key of the retrieval protocol)."""
    return " ".join(title.lower().split())


@dataclass
class PairSet:
    """Parallel lists over the usable products (those with a title and a photo)."""

    ids: list[str]
    titles: list[str]
    texts: list[list[str]]  # per product: [title, attribute phrase variants...]
    image_paths: list[str]
    image_hashes: list[str]
    title_group: list[int] = field(default_factory=list)
    image_group: list[int] = field(default_factory=list)
    attributes: list[dict[str, str]] = field(default_factory=list)  # non-empty attribute values

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, idx: Sequence[int]) -> PairSet:
        return PairSet(
            ids=[self.ids[i] for i in idx],
            titles=[self.titles[i] for i in idx],
            texts=[self.texts[i] for i in idx],
            image_paths=[self.image_paths[i] for i in idx],
            image_hashes=[self.image_hashes[i] for i in idx],
            title_group=[self.title_group[i] for i in idx],
            image_group=[self.image_group[i] for i in idx],
            attributes=[self.attributes[i] for i in idx] if self.attributes else [],
        )


def descriptive_columns(products: Sequence[Product]) -> list[str]:
    """Attribute columns worth phrasing: categorical ones (at most max(10, half as many distinct values as
    filled rows)); identifiers, hashes and free text are near-unique per product and carry no shared meaning."""
    values: dict[str, set[str]] = {}
    filled: dict[str, int] = {}
    for p in products:
        for k, v in p.attributes.items():
            v = str(v).strip()
            if v:
                values.setdefault(k, set()).add(v)
                filled[k] = filled.get(k, 0) + 1
    return [k for k in values if len(values[k]) <= max(10, 0.5 * filled[k])]


def attribute_values(product: Product, columns: Sequence[str] | None = None) -> list[str]:
    """Descriptive attribute values in column order: non-empty, not purely numeric (years, prices, sizes)."""
    out = []
    for k, v in product.attributes.items():
        if columns is not None and k not in columns:
            continue
        v = str(v).strip()
        if v and not _NUMERIC.match(v) and v not in out:
            out.append(v)
    return out


def text_variants(product: Product, n: int, seed: int = 0, columns: Sequence[str] | None = None) -> list[str]:
    """``n`` texts for a product: the title first, then attribute phrases.

    Phrase 1 joins every descriptive attribute value in column order (e.g. "Men Navy Blue Shirts
    Casual"); further phrases are random order-preserving subsets (at least two values), drawn
    deterministically from ``seed`` and the product id. Fewer than ``n`` when attributes run out.
    """
    texts = [product.title]
    values = attribute_values(product, columns)
    if n <= 1 or not values:
        return texts
    full = " ".join(values)
    if full.lower() != product.title.lower():
        texts.append(full)
    rng = random.Random(f"{seed}:{product.id}")
    tries = 0
    while len(texts) < n and len(values) > 2 and tries < 4 * n:
        tries += 1
        k = rng.randint(2, len(values) - 1)
        pick = sorted(rng.sample(range(len(values)), k))
        phrase = " ".join(values[i] for i in pick)
        if phrase not in texts:
            texts.append(phrase)
    return texts


def build_pairs(
    products: Sequence[Product], *, n_variants: int = 4, seed: int = 0, min_pairs: int = 8
) -> PairSet:
    """Keep products with a non-empty title and a photo; assign title and image group ids.

    Raises :class:`CatalogError` when fewer than ``min_pairs`` usable pairs remain.
    """
    usable = [p for p in products if p.title and p.title.strip() and p.image_path]
    if products and not any(p.image_path for p in products):
        raise CatalogError(
            f"none of the {len(products)} products has a photo: training pairs titles with photos, so "
            'the catalog needs an image column (name it in the mapping: image = "<column>"), and its '
            "files must be found (image_root in the mapping when they live elsewhere than the catalog file)"
        )
    if not any(p.title and p.title.strip() for p in products) and products:
        raise CatalogError(
            f"none of the {len(products)} products has a title: name the title column (or the columns "
            "composing it) in the mapping"
        )
    if len(usable) < min_pairs:
        raise CatalogError(
            f"catalog has {len(usable)} valid (title, image) pairs out of {len(products)} products; "
            f"training needs at least {min_pairs} (check the title and image columns of the mapping)"
        )
    title_ids: dict[str, int] = {}
    image_ids: dict[str, int] = {}
    columns = descriptive_columns(usable)
    ps = PairSet([], [], [], [], [])
    for p in usable:
        ps.ids.append(p.id)
        ps.titles.append(p.title)
        ps.texts.append(text_variants(p, n_variants, seed, columns))
        ps.image_paths.append(p.image_path)
        h = p.image_hash or f"path:{p.image_path}"
        ps.image_hashes.append(h)
        ps.title_group.append(title_ids.setdefault(normalize_title(p.title), len(title_ids)))
        ps.image_group.append(image_ids.setdefault(h, len(image_ids)))
        ps.attributes.append({k: str(v).strip() for k, v in p.attributes.items() if str(v).strip()})
    log.info(
        "built %d pairs (%d distinct titles, %d distinct photos)", len(ps), len(title_ids), len(image_ids)
    )
    return ps


def _components(title_group: Sequence[int], image_group: Sequence[int]) -> list[int]:
    """Union-find over items linked by a shared title group or image group; returns a root per item."""
    n = len(title_group)
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for groups in (title_group, image_group):
        first: dict[int, int] = {}
        for i, g in enumerate(groups):
            if g in first:
                ra, rb = find(i), find(first[g])
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
            else:
                first[g] = i
    return [find(i) for i in range(n)]


def split_pairs(
    pairs: PairSet,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    frozen: Mapping[str, str] | None = None,
) -> dict[str, list[int]]:
    """Deterministic group-level split: ``{"train": [...], "val": [...], "test": [...]}`` item indices.

    Components (shared title or shared photo) are ordered by a seeded hash of their smallest
    product id, then filled into test, val, train until each reaches its share of items. The
    result depends only on the products and ``seed``, not on the catalog's row order.

    ``frozen`` (product id -> "train" / "val" / "test", an earlier split of a growing catalog, e.g.
    a model registry's, issue 12) makes the split stable as products are added: a component holding
    a frozen product keeps its side (test before val before train when components merged), and a
    component with none goes by its hash alone (test below ``test_fraction``, then val), never by
    quotas that shift with the catalog's size. So no product that was ever held out enters training.
    """
    roots = _components(pairs.title_group, pairs.image_group)
    members: dict[int, list[int]] = {}
    for i, r in enumerate(roots):
        members.setdefault(r, []).append(i)
    comps = list(members.values())

    def key(c: list[int]) -> str:
        return hashlib.sha256(f"{seed}:{min(pairs.ids[i] for i in c)}".encode()).hexdigest()

    out: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    if frozen is not None:
        for c in comps:
            sides = {frozen.get(pairs.ids[i]) for i in c}
            side = next((s for s in ("test", "val", "train") if s in sides), None)
            if side is None:
                bucket = int(key(c)[:15], 16) / 16**15  # uniform in [0, 1), fixed per component
                side = "test" if bucket < test_fraction else "train"
                if side == "train" and bucket < test_fraction + val_fraction:
                    side = "val"
            out[side].extend(c)
        for v in out.values():
            v.sort()
        return out
    comps.sort(key=key)
    n = len(pairs)
    quota = {"test": round(test_fraction * n), "val": round(val_fraction * n)}
    for c in comps:
        for name in ("test", "val"):
            if len(out[name]) < quota[name] and len(out[name]) + len(c) <= max(quota[name], 1) * 1.5:
                out[name].extend(c)
                break
        else:
            out["train"].extend(c)
    for v in out.values():
        v.sort()
    return out


def sample_text_indices(
    pairs: PairSet, idx: Sequence[int], rng: random.Random, title_prob: float
) -> list[int]:
    """Per item, which text variant to use this step: the title with ``title_prob``, else a phrase."""
    out = []
    for i in idx:
        k = len(pairs.texts[i])
        out.append(0 if k == 1 or rng.random() < title_prob else rng.randint(1, k - 1))
    return out


@dataclass
class AttributeLabels:
    """Class names per classified column and ``labels[column][item]`` (``-1``: unknown or rare)."""

    classes: dict[str, list[str]]
    labels: dict[str, list[int]]
    skipped: dict[str, str]  # column -> why it is not classified


def attribute_labels(
    pairs: PairSet,
    train: Sequence[int],
    *,
    max_classes: int,
    min_count: int,
    min_coverage: float,
) -> AttributeLabels:
    """Classes of each categorical column, learned from the ``train`` items only (the bounds are
    :class:`~prodsearch.training.config.TrainConfig`'s ``attribute_*`` fields, their one default).

    A value is a class when at least ``min_count`` training products carry it; a column is
    classified when it then has 2..``max_classes`` classes and they cover at least
    ``min_coverage`` of the training products that fill the column. Identifiers never repeat (no
    class), a constant column has one; free text repeats only now and then (a few boilerplate
    values: classes that cover a small share of the column), and so does a long tail of values
    too rare to learn. Values are compared case- and space-insensitively; empty values are unknown.
    """
    counts: dict[str, dict[str, int]] = {}
    for i in train:
        for col, v in pairs.attributes[i].items() if pairs.attributes else ():
            key = " ".join(v.lower().split())
            if not key:
                continue
            counts.setdefault(col, {})
            counts[col][key] = counts[col].get(key, 0) + 1
    classes: dict[str, list[str]] = {}
    skipped: dict[str, str] = {}
    for col, c in counts.items():
        kept = sorted(v for v, n in c.items() if n >= min_count)
        filled = sum(c.values())
        covered = sum(c[v] for v in kept) / filled
        if len(kept) < 2:
            skipped[col] = f"{len(kept)} value(s) on >= {min_count} training products"
        elif len(kept) > max_classes:
            skipped[col] = f"{len(kept)} values > attribute_max_classes={max_classes}"
        elif covered < min_coverage:
            skipped[col] = (
                f"its {len(kept)} values on >= {min_count} training products cover {covered:.0%} of "
                f"the {filled} that fill it (< attribute_min_coverage={min_coverage:.0%}): most of its "
                "values are too rare to learn (free text or a long tail)"
            )
        else:
            classes[col] = kept
    labels: dict[str, list[int]] = {}
    for col, names in classes.items():
        index = {v: k for k, v in enumerate(names)}
        labels[col] = [
            index.get(" ".join(pairs.attributes[i].get(col, "").lower().split()), -1)
            for i in range(len(pairs))
        ]
    return AttributeLabels(classes, labels, skipped)


def same_attributes(labels: dict[str, list[int]], idx: Sequence[int]) -> list[list[bool]] | None:
    """``(B, B)`` nested lists: items i and j carry the same known class in every classified column."""
    if not labels:
        return None
    rows = [[labels[c][i] for c in labels] for i in idx]
    return [[a == b and min(a) >= 0 for b in rows] for a in rows]


def grouped_batches(
    items: Sequence[int], groups: Sequence[int], batch_size: int, n_groups: int, rng: random.Random
) -> list[list[int]]:
    """P x K batches for hard in-batch negatives: each batch is made of runs of ``batch_size //
    n_groups`` items of one group (e.g. one product type), so an item's negatives are mostly
    products of the same type in other colours and brands, not trivially different ones.

    ``groups[i]`` is item i's group (-1: unknown; those items form runs of their own). Every item
    appears once; the runs are shuffled, so which groups share a batch changes every epoch.
    """
    k = max(1, batch_size // max(1, n_groups))
    members: dict[int, list[int]] = {}
    for i in items:
        members.setdefault(int(groups[i]), []).append(i)
    runs = []
    for g in sorted(members):
        m = members[g]
        rng.shuffle(m)
        runs.extend(m[s : s + k] for s in range(0, len(m), k))
    rng.shuffle(runs)
    batches, cur = [], []
    for run in runs:
        cur.extend(run)
        if len(cur) >= batch_size:
            batches.append(cur[:batch_size])
            cur = cur[batch_size:]
    if cur:
        batches.append(cur)
    return batches


def type_groups(products: Sequence[Product], pairs: PairSet) -> list[int] | None:
    """Per pair, a code of its product type (the evaluation's detected type column; -1 where the
    product has none), for :func:`grouped_batches`. ``None`` (logged) when no column looks like a type."""
    from prodsearch.evaluation.fields import resolve_fields

    column = resolve_fields(products).type
    if column is None:
        log.warning("batch_groups: no attribute column looks like a product type; batches stay random")
        return None
    codes: dict[str, int] = {}
    groups = [codes.setdefault(a[column], len(codes)) if a.get(column) else -1 for a in pairs.attributes]
    log.info("batch_groups: batches drawn by %r (%d types)", column, len(codes))
    return groups
