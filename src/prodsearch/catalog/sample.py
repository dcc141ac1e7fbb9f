"""Stratified samples of a catalog: a small sample that still covers every product type.

The first N rows of a catalog are rarely representative (the shared fashion catalog's first 3,000
ids hold no women's dresses, wallets or sunglasses). :func:`stratified_order` deals rows out
round-robin over the groups of one categorical column (the product type), and within each group
round-robin over a second one (the colour), each with a fixed seed. So the first N of the order is
a sample with every type represented as evenly as the group sizes allow and each type's colours
spread (a 3,000 sample of the fashion catalog has red dresses, not 30 black and pink ones), and a
smaller sample is always a subset of a larger one (the demo's README ids stay valid for every size).
"""

from __future__ import annotations

import csv
import json
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from prodsearch.catalog.mapping import DETECT_SAMPLE_ROWS, detect_mapping_report, normalize_name
from prodsearch.catalog.tables import read_table
from prodsearch.errors import CatalogError
from prodsearch.paths import atomic_write_text

#: Changes whenever the order changes, so caches of samples (the demo's) are not reused across versions.
SAMPLE_VERSION = 2
#: A strata column has at least 2 and at most this many distinct values.
MAX_STRATA = 200
_COLOUR_NAMES = ("colour", "color", "couleur", "farbe", "kleur", "colore", "cor")


def stratified_order(
    keys: Sequence[str], *, seed: int = 0, subkeys: Sequence[str] | None = None
) -> list[int]:
    """Row indices dealt round-robin over the groups of ``keys`` (larger groups first in each round,
    ties by name: the common colours of a type come before the rare ones). Rows within
    a group come in a seeded shuffle, or, with ``subkeys``, in the stratified order of their subkeys
    (so each group's first rows differ in subkey). Every prefix is a stratified sample; prefixes are
    nested."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, key in enumerate(keys):
        groups[key].append(i)
    rng = random.Random(seed)
    queues = []
    for key in sorted(groups, key=lambda g: (-len(groups[g]), g)):
        rows = groups[key]
        rng.shuffle(rows)
        if subkeys is not None:
            inner = stratified_order([subkeys[i] for i in rows], seed=rng.randrange(2**31))
            rows = [rows[j] for j in inner]
        queues.append(rows)
    order: list[int] = []
    depth = 0
    while len(order) < len(keys):
        order.extend(q[depth] for q in queues if depth < len(q))
        depth += 1
    return order


def choose_strata_field(columns: dict[str, Sequence[str]]) -> str | None:
    """The attribute with the most distinct non-empty values between 2 and :data:`MAX_STRATA`
    (the finest grouping that is still a category: product type rather than gender)."""
    best, best_n = None, 1
    for name, values in columns.items():
        n = len({v for v in values if v})
        if best_n < n <= MAX_STRATA:
            best, best_n = name, n
    return best


def choose_substrata_field(columns: dict[str, Sequence[str]], field: str | None) -> str | None:
    """The second strata column: a colour column if there is one (what shoppers' queries name next
    to the type), else the next finest category."""
    rest = {k: v for k, v in columns.items() if k != field}
    colours = {k: v for k, v in rest.items() if any(w in normalize_name(k) for w in _COLOUR_NAMES)}
    return choose_strata_field(colours) or choose_strata_field(rest)


def write_stratified_sample(
    catalog: str | Path, out_dir: str | Path, limit: int, *, seed: int = 0, field: str | None = None
) -> tuple[Path, Path, str | None]:
    """Write ``limit`` rows of ``catalog`` chosen by :func:`stratified_order` to ``out_dir/catalog.csv``,
    and the detected column mapping to ``out_dir/mapping.json`` with ``image_root`` set to the
    catalog's folder (the photos stay where they are). Returns ``(csv, mapping, strata field)``.
    """
    catalog = Path(catalog)
    if limit < 1:
        raise CatalogError(f"sample size must be >= 1, got {limit}")
    table = read_table(catalog)
    if not table.rows:
        raise CatalogError(f"{catalog}: no rows to sample")
    detection = detect_mapping_report(table.columns, table.rows[:DETECT_SAMPLE_ROWS])
    mapping = detection.mapping
    idx = {c: i for i, c in enumerate(table.columns)}
    attrs = {a: [r[idx[a]] for r in table.rows] for a in mapping.attributes}
    if field is None:
        field = choose_strata_field(attrs)
    elif field not in idx:
        raise CatalogError(f"{catalog}: no column {field!r} to stratify by; columns: {table.columns}")
    keys = [r[idx[field]] for r in table.rows] if field else [""] * len(table.rows)
    sub = choose_substrata_field(attrs, field) if field else None
    subkeys = attrs[sub] if sub else None
    chosen = sorted(stratified_order(keys, seed=seed, subkeys=subkeys)[:limit])  # file order, for reading
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, mapping_path = out / "catalog.csv", out / "mapping.json"
    tmp = csv_path.with_name(".catalog.csv.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(table.columns)
        writer.writerows(table.rows[i] for i in chosen)
    tmp.replace(csv_path)
    root = mapping.image_root or str(catalog.absolute().parent)
    data = replace(mapping, image_root=root).to_dict()
    atomic_write_text(mapping_path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    return csv_path, mapping_path, field
