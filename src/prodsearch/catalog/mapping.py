"""Column mappings: load one from a TOML/YAML/JSON file, or detect one from the column names and values.

Detection matches names case-insensitively, ignoring accents and any ``_``, ``-``, ``.`` or space, so
``Product_ID``, ``product-id`` and ``productId`` are all ``productid``. Roles are filled in order
id -> title -> image -> text; every remaining column that looks categorical becomes an attribute.

Composed fields: ``title`` and each ``text`` entry may be a template naming columns in braces,
``title = "{name} {type}"`` ("HEMNES" + "Bookcase" -> "HEMNES Bookcase"), or a list of columns, which
is the template joining them with spaces. Empty parts are dropped with their surrounding spaces.
"""

from __future__ import annotations

import json
import logging
import re
import string
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prodsearch.catalog.schema import ColumnMapping
from prodsearch.errors import CatalogError

log = logging.getLogger(__name__)

#: Rows of the catalog that detection looks at (the head of the file).
DETECT_SAMPLE_ROWS = 10_000

# Candidate names, normalised (see :func:`normalize_name`), in order of preference.
ID_NAMES = (
    "id", "sku", "productid", "itemid", "asin", "articleid", "styleid", "productsku", "itemsku",
    "skuid", "productcode", "itemcode", "articlecode", "articlenumber", "articleno", "itemnumber",
    "productnumber", "partnumber", "mpn", "gtin", "ean", "upc", "uid", "uuid", "code", "reference",
    "ref", "handle", "key",
    # fr / de / es / it / nl / pt
    "idproduit", "codeproduit", "artikelnummer", "artikelnr", "artikelid", "produktid", "referencia",
    "idproducto", "codigo", "codice", "codiceprodotto", "artikelcode", "codigoproduto",
)  # fmt: skip
TITLE_NAMES = (
    "title", "name", "productname", "productdisplayname", "displayname", "producttitle", "itemname",
    "itemtitle", "articlename", "articletitle", "productlabel", "label", "heading",
    "titre", "nom", "nomproduit", "nomduproduit", "libelle", "designation",
    "titel", "bezeichnung", "produktname", "artikelname", "artikelbezeichnung", "produkttitel",
    "nombre", "titulo", "nombreproducto", "nombredelproducto",
    "nome", "titolo", "nomeprodotto", "naam", "productnaam", "nazwa", "namn", "navn",
)  # fmt: skip
TEXT_NAMES = (
    "description", "desc", "details", "detail", "productdescription", "itemdescription",
    "longdescription", "shortdescription", "brand", "brandname", "bulletpoints", "bullets",
    "features", "highlights", "summary", "about", "abouttheitem", "keywords", "tags", "material",
    "materials", "subtitle", "body", "bodyhtml", "content", "manufacturer", "vendor", "specifications",
    "marque", "beschreibung", "produktbeschreibung", "marke", "hersteller", "merkmale",
    "descripcion", "marca", "fabricante", "detalles", "descrizione", "dettagli",
    "beschrijving", "omschrijving", "merk", "descricao", "opis",
)  # fmt: skip
IMAGE_NAMES = (
    "image", "imagepath", "img", "imgpath", "picture", "picturepath", "photo", "photopath", "file",
    "filename", "filepath", "imagefile", "imagefilename", "imagename", "mainimage", "primaryimage",
    "thumbnail", "path", "imagelocation", "imageurl", "imagelink", "imagesrc", "mainimageurl", "pictureurl",
    "photourl", "imgurl", "thumbnailurl",
    "bild", "bildpfad", "imagen", "immagine", "foto", "afbeelding", "imagem", "zdjecie",
)  # fmt: skip

#: Technical columns (digests, links, image/file sizes) are never attributes: name fragments found
#: anywhere, and short ones that must start or end the name ("uri" is inside "security").
_TECHNICAL_PARTS = ("md5", "sha1", "sha256", "checksum")
_TECHNICAL_EDGES = ("hash", "url", "uri", "href", "link", "pixel", "width", "height", "bytes", "filesize",
                    "path", "file", "filename")  # fmt: skip
_IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".avif", ".heic")
_HEX = re.compile(
    r"^(?:[0-9a-fA-F]{16,}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"
)
_INT = re.compile(r"^[+-]?\d+$")
_FLOAT = re.compile(r"^[+-]?(?:\d+\.\d*|\.\d+|\d+(?:\.\d*)?[eE][+-]?\d+)$")
_MAPPING_KEYS = ("id", "title", "text", "attributes", "image", "image_root")


def normalize_name(name: str) -> str:
    """``"Product_Display-Name"`` -> ``"productdisplayname"``; accents dropped (``"Référence"`` -> ``"reference"``)."""
    decomposed = unicodedata.normalize("NFKD", str(name))
    return "".join(ch for ch in decomposed if ch.isalnum() and not unicodedata.combining(ch)).lower()


# ---------------------------------------------------------------------------- composed fields
def is_template(spec: str) -> bool:
    """Whether a title/text spec is a template (``"{name} {type}"``) rather than a column name."""
    return "{" in spec


def template_columns(spec: str) -> list[str]:
    """Columns a title/text spec reads: ``"{name} {type}"`` -> ``["name", "type"]``; ``"name"`` -> ``["name"]``.

    Raises :class:`CatalogError` for a malformed template (unbalanced braces, a format spec).
    """
    if not is_template(spec):
        return [spec]
    try:
        parts = list(string.Formatter().parse(spec))
    except ValueError as err:
        raise CatalogError(
            f"malformed field template {spec!r}: {err} (write columns as {{column}})"
        ) from None
    cols: list[str] = []
    for _, name, fmt, conv in parts:
        if name is None:
            continue
        if not name or fmt or conv:
            raise CatalogError(
                f"malformed field template {spec!r}: expected column names in braces like {{name}}, got "
                f"{{{name}{'!' + conv if conv else ''}{':' + fmt if fmt else ''}}}"
            )
        if name not in cols:
            cols.append(name)
    if not cols:
        raise CatalogError(f"field template {spec!r} names no column; write columns as {{column}}")
    return cols


def compile_field(spec: str, columns: Sequence[str]) -> Callable[[Sequence[str]], str]:
    """A function from a row's cells (aligned with ``columns``) to the field's text.

    A column name reads its cell; a template fills each ``{column}`` with the stripped cell and drops
    the spaces left by empty ones (``"{name} {type}"`` with no type -> ``"HEMNES"``).
    """
    idx = {c: i for i, c in enumerate(columns)}
    if not is_template(spec):
        i = idx[spec]
        return lambda cells: cells[i].strip()
    pieces = [
        (lit, None if name is None else idx[name]) for lit, name, _, _ in string.Formatter().parse(spec)
    ]

    def render(cells: Sequence[str]) -> str:
        out = "".join(lit + ("" if i is None else cells[i].strip()) for lit, i in pieces)
        return " ".join(out.split())

    return render


def _spec_from(value: Any, key: str, source: str) -> str:
    """A title/text entry as given (column, template or list of columns) -> one spec string."""
    if isinstance(value, list) and value and all(isinstance(v, str) and v.strip() for v in value):
        return " ".join("{" + v + "}" for v in value)
    if isinstance(value, str) and value.strip():
        if is_template(value):
            try:
                template_columns(value)
            except CatalogError as err:
                raise CatalogError(f"{source}: key {key!r}: {err}") from None
        return value
    raise CatalogError(
        f'{source}: key {key!r} must be a column name, a template like "{{name}} {{type}}" or a list of '
        f"column names, got {value!r}"
    )


# ---------------------------------------------------------------------------- loading
def load_mapping(path: str | Path) -> ColumnMapping:
    """Read a column mapping from a ``.toml``, ``.yaml``/``.yml`` or ``.json`` file.

    Keys: ``id`` (required, a column name), ``title`` (required: a column, a template
    ``"{name} {type}"`` or a list of columns), ``text`` (a list of columns or templates),
    ``attributes`` (a column name or a list of them), ``image`` (a column of paths or URLs),
    ``image_root`` (the folder image paths resolve in; relative to the mapping file's folder).
    Raises :class:`CatalogError` naming the file and key.
    """
    path = Path(path)
    if not path.is_file():
        raise CatalogError(f"{path}: column-mapping file not found")
    suffix = path.suffix.lower()
    try:
        raw = path.read_text(encoding="utf-8-sig")
        if suffix == ".toml":
            try:
                import tomllib
            except ImportError:  # pragma: no cover - Python 3.10
                from prodsearch.errors import require

                tomllib = require("tomli", "toml")
            data = tomllib.loads(raw)
        elif suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(raw)
        elif suffix == ".json":
            data = json.loads(raw)
        else:
            raise CatalogError(
                f"{path}: unsupported column-mapping format {suffix!r}; expected .toml, .yaml, .yml or .json"
            )
    except CatalogError:
        raise
    except Exception as err:  # parse errors of three libraries; each message carries the line
        raise CatalogError(f"{path}: cannot parse column mapping ({err.__class__.__name__}: {err})") from err
    mapping = mapping_from_dict(data, source=str(path))
    if mapping.image_root and not Path(mapping.image_root).expanduser().is_absolute():
        mapping.image_root = str((path.parent / mapping.image_root).resolve())
    return mapping


def mapping_from_dict(data: Any, *, source: str = "column mapping") -> ColumnMapping:
    """Validate a plain dict (from a file or an API call) into a :class:`ColumnMapping`."""
    if not isinstance(data, Mapping):
        raise CatalogError(
            f"{source}: expected a table of keys {list(_MAPPING_KEYS)}, got {type(data).__name__}"
        )
    unknown = [k for k in data if k not in _MAPPING_KEYS]
    if unknown:
        raise CatalogError(f"{source}: unknown key(s) {unknown}; expected some of {list(_MAPPING_KEYS)}")
    for key in ("id", "title"):
        if key not in data:
            raise CatalogError(
                f"{source}: missing required key {key!r} (the column holding the product {key})"
            )
    if not isinstance(data["id"], str) or not data["id"].strip():
        raise CatalogError(f"{source}: key 'id' must be a column name, got {data['id']!r}")
    title = _spec_from(data["title"], "title", source)
    lists: dict[str, list[str]] = {}
    for key in ("text", "attributes"):
        value = data.get(key) or []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            what = (
                "a column name, a template or a list of them"
                if key == "text"
                else "a column name or a list of them"
            )
            raise CatalogError(f"{source}: key {key!r} must be {what}, got {value!r}")
        lists[key] = [_spec_from(v, key, source) for v in value] if key == "text" else list(value)
    for key in ("image", "image_root"):
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            what = "a column name" if key == "image" else "a folder path"
            raise CatalogError(f"{source}: key {key!r} must be {what}, got {value!r}")
    return ColumnMapping(
        id=data["id"],
        title=title,
        text=lists["text"],
        attributes=lists["attributes"],
        image=data.get("image") or None,
        image_root=data.get("image_root") or None,
    )


def check_mapping_columns(mapping: ColumnMapping, columns: Sequence[str], source: str) -> None:
    """Raise :class:`CatalogError` if ``mapping`` names a column that ``columns`` lacks."""
    have = set(columns)
    named = [("id", mapping.id)] + [("title", c) for c in template_columns(mapping.title)]
    named += [("text", c) for spec in mapping.text for c in template_columns(spec)]
    named += [("attributes", c) for c in mapping.attributes]
    if mapping.image:
        named.append(("image", mapping.image))
    missing = [f"{role}={col!r}" for role, col in named if col not in have]
    if missing:
        raise CatalogError(
            f"{source}: the column mapping names missing column(s) {missing}; the file has {list(columns)}"
        )


# ---------------------------------------------------------------------------- detection
@dataclass
class DetectionReport:
    """What :func:`detect_mapping_report` chose and why: the mapping, a one-line reason per used
    column and per ignored column, in column order."""

    mapping: ColumnMapping
    used: dict[str, str] = field(default_factory=dict)  # column -> "role: why"
    ignored: dict[str, str] = field(default_factory=dict)  # column -> why it plays no role

    def summary(self) -> str:
        """Human lines: the roles, then each ignored column with its reason."""
        m = self.mapping
        lines = [
            f"detected columns: id={m.id!r}, title={m.title!r}, image={m.image!r}, text={m.text}, "
            f"attributes={m.attributes}"
        ]
        lines += [f"  ignored {col!r}: {why}" for col, why in self.ignored.items()]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"mapping": self.mapping.to_dict(), "used": dict(self.used), "ignored": dict(self.ignored)}

    def to_toml(self, source: str = "") -> str:
        """A mapping file the user can edit (``prodsearch mapping CATALOG > mapping.toml``)."""
        m = self.mapping

        def q(value: str) -> str:
            return json.dumps(value, ensure_ascii=False)  # a TOML basic string is a JSON string

        def arr(values: list[str]) -> str:
            return "[" + ", ".join(q(v) for v in values) + "]"

        lines = [f"# column mapping detected from {source}" if source else "# detected column mapping"]
        lines += [
            "# Edit and pass with --mapping. title and text entries may compose columns:",
            '#   title = "{name} {type}"',
            f"id = {q(m.id)}",
            f"title = {q(m.title)}",
            f"text = {arr(m.text)}",
            f"attributes = {arr(m.attributes)}",
        ]
        lines.append(f"image = {q(m.image)}" if m.image else '# image = "photo"   # no image column found')
        lines.append(
            '# image_root = "../photos"   # folder the image paths resolve in (default: the catalog\'s)'
        )
        if self.ignored:
            lines.append("# columns not used:")
            lines += [f"#   {col}: {why}" for col, why in self.ignored.items()]
        return "\n".join(lines) + "\n"


def detect_mapping(df_or_columns: Any, sample_rows: Any = None) -> ColumnMapping:
    """Guess a :class:`ColumnMapping` from column names and (optionally) sample values.

    Args:
        df_or_columns: a pandas DataFrame (its head is the sample), or a sequence of column names.
        sample_rows: with column names, sample rows as dicts (column -> value) or as sequences
            aligned with the columns. Without samples, attributes are not filtered by their values.

    Raises:
        CatalogError: no id or no title column; the message lists the columns and what was expected.
    """
    return detect_mapping_report(df_or_columns, sample_rows).mapping


def detect_mapping_report(df_or_columns: Any, sample_rows: Any = None) -> DetectionReport:
    """:func:`detect_mapping` with the reason for every column's role, or for ignoring it."""
    columns, sample = _columns_and_sample(df_or_columns, sample_rows)
    dupes = sorted({c for c in columns if columns.count(c) > 1})
    if dupes:
        raise CatalogError(f"duplicate column name(s) {dupes} in {columns}")
    norm = {c: normalize_name(c) for c in columns}
    used: set[str] = set()
    why_used: dict[str, str] = {}

    id_col = _pick(columns, norm, used, ID_NAMES)
    why_used[id_col or ""] = "id: its name"
    if id_col is None:
        id_col = _pick_suffix(columns, norm, used, ("id", "sku"), sample)
        why_used[id_col or ""] = "id: named *id/*sku with unique values"
    if id_col is None:
        raise _not_found("id", columns, ID_NAMES)
    used.add(id_col)
    title_col = _pick(columns, norm, used, TITLE_NAMES)
    why_used[title_col or ""] = "title: its name"
    if title_col is None:
        title_col = _pick_title_fallback(columns, norm, used)
        why_used[title_col or ""] = "title: named like *title / *name"
    if title_col is None:
        raise _not_found("title", columns, TITLE_NAMES)
    used.add(title_col)
    image_col = _pick_image(columns, norm, used, sample)
    if image_col:
        used.add(image_col)
        why_used[image_col] = "image: " + (
            "values are image files"
            if sample and _looks_like_image_paths(sample.get(image_col))
            else "its name"
        )

    text = [c for c in columns if c not in used and _is_text_name(norm[c])]
    used.update(text)
    why_used.update({c: "text: its name" for c in text})
    attributes: list[str] = []
    ignored: dict[str, str] = {}
    n_rows = len(next(iter(sample.values()), [])) if sample else 0
    for col in columns:
        if col in used:
            continue
        kind, why = _classify_rest(norm[col], sample.get(col) if sample else None, n_rows)
        if kind == "text":
            text.append(col)
            why_used[col] = f"text: {why}"
        elif kind == "attribute":
            attributes.append(col)
            why_used[col] = f"attribute: {why}"
        else:
            ignored[col] = why
    mapping = ColumnMapping(id=id_col, title=title_col, text=text, attributes=attributes, image=image_col)
    report = DetectionReport(
        mapping, used={c: why_used[c] for c in columns if c in why_used}, ignored=ignored
    )
    log.debug("%s", report.summary())
    return report


def _columns_and_sample(
    df_or_columns: Any, sample_rows: Any
) -> tuple[list[str], dict[str, list[str]] | None]:
    if hasattr(df_or_columns, "columns") and hasattr(df_or_columns, "head"):  # a DataFrame
        df = df_or_columns.head(DETECT_SAMPLE_ROWS)
        columns = [str(c) for c in df.columns]
        sample = {str(c): [_as_str(v) for v in df[c].tolist()] for c in df.columns}
        return columns, sample
    columns = [str(c) for c in df_or_columns]
    if sample_rows is None:
        return columns, None
    if hasattr(sample_rows, "to_dict"):  # a DataFrame of samples
        sample_rows = sample_rows.to_dict("records")
    rows = list(sample_rows)[:DETECT_SAMPLE_ROWS]
    if rows and not isinstance(rows[0], Mapping):  # sequences aligned with the columns: transpose
        width = len(columns)
        padded = (list(r)[:width] + [""] * (width - len(r)) for r in rows)
        return columns, {
            c: [_as_str(v) for v in col] for c, col in zip(columns, zip(*padded, strict=True), strict=True)
        }
    sample: dict[str, list[str]] = {c: [] for c in columns}
    for row in rows:
        if not isinstance(row, Mapping):
            raise CatalogError(f"sample rows must all be dicts or all be sequences, got {type(row).__name__}")
        for c in columns:
            sample[c].append(_as_str(row.get(c)))
    return columns, sample


def _as_str(value: Any) -> str:
    if type(value) is str:
        return value.strip()
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return str(value).strip()


def _pick(columns: list[str], norm: dict[str, str], used: set[str], names: Sequence[str]) -> str | None:
    by_norm: dict[str, str] = {}
    for c in columns:
        if c not in used:
            by_norm.setdefault(norm[c], c)
    for name in names:
        if name in by_norm:
            return by_norm[name]
    return None


def _pick_suffix(columns, norm, used, suffixes, sample) -> str | None:
    """A column named like ``*id`` / ``*sku`` whose sampled values are unique and non-empty."""
    for c in columns:
        if c in used or not norm[c].endswith(suffixes):
            continue
        values = sample.get(c) if sample else None
        if values is None or (all(values) and len(set(values)) == len(values)):
            return c
    return None


def _pick_title_fallback(columns, norm, used) -> str | None:
    for c in columns:
        if c not in used and norm[c].endswith(("title", "titel", "titre", "titulo", "titolo")):
            return c
    skip = (
        "file",
        "image",
        "img",
        "brand",
        "categ",
        "color",
        "colour",
        "user",
        "vendor",
        "seller",
        "shop",
        "photo",
    )
    for c in columns:
        n = norm[c]
        if c not in used and n.endswith(("name", "nom", "nombre", "nome")) and not any(s in n for s in skip):
            return c
    return None


def _looks_like_image_paths(values: list[str] | None) -> bool:
    filled = [v for v in (values or []) if v]
    if not filled:
        return False
    hits = sum(v.lower().split("?")[0].endswith(_IMAGE_EXTS) for v in filled)
    return hits >= 0.8 * len(filled)


def _pick_image(columns, norm, used, sample) -> str | None:
    candidates = [c for c in columns if c not in used and norm[c] in IMAGE_NAMES]
    candidates.sort(key=lambda c: IMAGE_NAMES.index(norm[c]))
    if sample:
        # prefer a named column whose values are image files; else any column whose values are
        for c in candidates:
            if _looks_like_image_paths(sample.get(c)):
                return c
        for c in columns:
            if c not in used and _looks_like_image_paths(sample.get(c)):
                return c
    return candidates[0] if candidates else None


def _is_text_name(n: str) -> bool:
    return n in TEXT_NAMES or any(p in n for p in ("description", "beschreibung", "bullet"))


def _is_technical(n: str) -> bool:
    return (
        any(p in n for p in _TECHNICAL_PARTS)
        or n.startswith(_TECHNICAL_EDGES)
        or n.endswith(_TECHNICAL_EDGES)
        or n in ("w", "h")
    )


def _classify_rest(n: str, values: list[str] | None, n_rows: int) -> tuple[str, str]:
    """``("attribute" | "text" | "skip", why)`` for a column that is not id/title/image/named text."""
    if _is_technical(n):
        return "skip", "technical column name"
    if values is None:
        return "attribute", "no sample values to check"
    filled = [v for v in values if v]
    if not filled:
        return "skip", "empty in the sample"
    if sum(bool(_HEX.match(v)) for v in filled) >= 0.9 * len(filled):
        return "skip", "values look like hex digests / UUIDs"
    if all(_INT.match(v) or _FLOAT.match(v) for v in filled) and any(_FLOAT.match(v) for v in filled):
        return "skip", "non-integer numbers (a measure, not a category)"
    mean_len = sum(map(len, filled)) / len(filled)
    if mean_len >= 40 and sum(" " in v for v in filled) >= 0.8 * len(filled):
        return "text", "long free text"
    distinct = len(set(filled))
    cap = max(50, int(0.05 * n_rows))
    if distinct <= cap:
        return "attribute", f"{distinct} distinct values"
    # Short values that repeat (each seen twice or more on average) are categories too, whatever the
    # column is called and in whatever language: "white stained oak effect" colours, sizes, types.
    short = mean_len <= 32 and sum(len(v.split()) <= 5 for v in filled) >= 0.9 * len(filled)
    if short and distinct <= 0.5 * len(filled):
        return "attribute", f"short values, {distinct} distinct in {len(filled)} filled rows"
    return "skip", f"{distinct} distinct values in {n_rows} rows (more than {cap}: not categorical)"


def _not_found(role: str, columns: list[str], names: Sequence[str]) -> CatalogError:
    return CatalogError(
        f"cannot detect the product {role} column among {columns}; expected a column named like "
        f"{list(names[:8])} (case, accents, '_', '-' and spaces ignored). Write a column-mapping file "
        f"(TOML/YAML/JSON with keys id, title, text, attributes, image) and pass it with --mapping"
    )
