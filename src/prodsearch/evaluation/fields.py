"""Which attribute columns play the roles "type", "colour" and "other attributes" in the protocols.

Nothing here knows a particular catalog: the user may name the fields; otherwise they are chosen by
name hints in several languages and by the shape of the data (cardinality, coverage, functional
dependence on the type), and the choice is recorded in metrics.json.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from prodsearch.catalog.schema import Product
from prodsearch.errors import ConfigError

TYPE_HINTS = (
    "type",
    "typ",
    "tipo",
    "art",
    "kind",
    "class",
    "klasse",
    "category",
    "categorie",
    "catégorie",
    "kategorie",
    "categoria",
    "categoría",
    "kategori",
    "section",
    "department",
)
COLOUR_HINTS = (
    "colour",
    "color",
    "colours",
    "farbe",
    "couleur",
    "colore",
    "kleur",
    "färg",
    "farve",
    "farge",
    "cor",
    "kolor",
    "renk",
    "цвет",
    "色",
    "颜色",
)
#: Attributes shoppers type into a query next to the type (audience, use, material, fit, pattern).
AUDIENCE_HINTS = (
    "gender",
    "geschlecht",
    "sexe",
    "genre",
    "género",
    "genero",
    "sex",
    "audience",
    "usage",
    "occasion",
    "anlass",
    "material",
    "pattern",
    "muster",
    "fit",
    "style",
    "stil",
)
#: Values that mean "no value" in many catalogs.
EMPTY_VALUES = {"", "na", "n/a", "nan", "none", "null", "-", "unknown", "other", "others"}

MAX_TYPE_VALUES = 1000
MAX_ATTR_VALUES = 60
MIN_COVERAGE = 0.5
MAX_UNIQUE_SHARE = 0.5


@dataclass
class FieldStats:
    name: str
    coverage: float  # share of products with a non-empty value
    n_values: int
    numeric: bool
    present: int = 0  # products with a value


@dataclass
class FieldChoice:
    """The resolved roles. ``how`` says per role whether the user named it or a heuristic chose it."""

    type: str | None
    colour: str | None
    attributes: list[str] = field(default_factory=list)
    how: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def clean_value(value: object) -> str | None:
    """Attribute value as a stripped string, or None if it means "missing"."""
    if value is None:
        return None
    s = str(value).strip()
    return None if s.lower() in EMPTY_VALUES else s


def attribute_names(products: Sequence[Product]) -> list[str]:
    """Attribute columns present in the products, in first-seen order."""
    seen: dict[str, None] = {}
    for p in products:
        for k in p.attributes:
            seen.setdefault(k, None)
    return list(seen)


def field_stats(products: Sequence[Product], name: str) -> FieldStats:
    values = [clean_value(p.attributes.get(name)) for p in products]
    present = [v for v in values if v is not None]
    numeric = bool(present) and all(re.fullmatch(r"-?\d+(\.\d+)?", v) for v in present[:200])
    return FieldStats(name, len(present) / max(1, len(products)), len(set(present)), numeric, len(present))


def _tokens(name: str) -> list[str]:
    # split camelCase, snake_case, kebab-case: "articleType" -> ["article", "type"]
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", name)
    return [t for t in re.split(r"[\W_]+", spaced.lower()) if t]


def _hint_rank(name: str, hints: Sequence[str]) -> int | None:
    """Position of the first hint matching a token of ``name`` (lower = stronger), else None."""
    toks = _tokens(name)
    for i, h in enumerate(hints):
        # prefixes and suffixes catch compounds: "colourName", "Produktkategorie", "Grundfarbe"
        if any(t == h or (len(h) >= 4 and (t.startswith(h) or t.endswith(h))) for t in toks):
            return i
    return None


def _determines(products: Sequence[Product], type_field: str, other: str) -> bool:
    """True if ``other`` is (almost always) a function of ``type_field`` (e.g. a parent category)."""
    by_type: dict[str, Counter] = {}
    for p in products:
        t, o = clean_value(p.attributes.get(type_field)), clean_value(p.attributes.get(other))
        if t is not None and o is not None:
            by_type.setdefault(t, Counter())[o] += 1
    total = sum(sum(c.values()) for c in by_type.values())
    agree = sum(c.most_common(1)[0][1] for c in by_type.values())
    return total > 0 and agree / total >= 0.98


def resolve_fields(
    products: Sequence[Product],
    *,
    type_field: str | None = None,
    colour_field: str | None = None,
    attr_fields: Sequence[str] | None = None,
    max_attrs: int = 3,
) -> FieldChoice:
    """Choose the type / colour / attribute fields (user choices win; unknown names raise)."""
    names = attribute_names(products)
    for role, given in (("type", type_field), ("colour", colour_field)):
        if given is not None and given not in names:
            raise ConfigError(
                f"{role} field {given!r} is not an attribute column; attribute columns: {names}"
            )
    for f in attr_fields or ():
        if f not in names:
            raise ConfigError(f"attribute field {f!r} is not an attribute column; attribute columns: {names}")

    stats = {n: field_stats(products, n) for n in names}
    # categorical: mostly filled, not numbers, 2+ values, and values repeat (ids / titles / SKUs do not)
    usable = [
        n
        for n in names
        if stats[n].coverage >= MIN_COVERAGE
        and not stats[n].numeric
        and 2 <= stats[n].n_values <= MAX_UNIQUE_SHARE * stats[n].present
    ]
    how: dict[str, str] = {}

    if type_field is None:
        cands = [
            n
            for n in usable
            if stats[n].n_values <= MAX_TYPE_VALUES and _hint_rank(n, TYPE_HINTS) is not None
        ]
        # "type" beats "category"; among equals the finer field (more values) is the product type
        cands.sort(key=lambda n: (0 if _hint_rank(n, TYPE_HINTS) < 5 else 1, -stats[n].n_values))
        type_field = cands[0] if cands else None
        how["type"] = "heuristic" if type_field else "none found"
    else:
        how["type"] = "user"

    if colour_field is None:
        cands = [n for n in usable if n != type_field and _hint_rank(n, COLOUR_HINTS) is not None]
        cands.sort(key=lambda n: (_hint_rank(n, COLOUR_HINTS), -stats[n].coverage))
        colour_field = cands[0] if cands else None
        how["colour"] = "heuristic" if colour_field else "none found"
    else:
        how["colour"] = "user"

    if attr_fields is None:
        rest = [
            n for n in usable if n not in (type_field, colour_field) and stats[n].n_values <= MAX_ATTR_VALUES
        ]
        if type_field is not None:  # a parent category adds nothing to a query that names the type
            rest = [n for n in rest if not _determines(products, type_field, n)]
        rest.sort(
            key=lambda n: (
                _hint_rank(n, AUDIENCE_HINTS) is None,
                _hint_rank(n, AUDIENCE_HINTS) or 0,
                stats[n].n_values,
            )
        )
        attrs = ([colour_field] if colour_field else []) + rest
        attr_fields = attrs[:max_attrs]
        how["attributes"] = "heuristic"
    else:
        attr_fields = list(attr_fields)
        how["attributes"] = "user"
    return FieldChoice(type=type_field, colour=colour_field, attributes=list(attr_fields), how=how)
