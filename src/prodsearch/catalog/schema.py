"""Typed records of the catalog: the column mapping, a product, and a row problem."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field


@dataclass
class ColumnMapping:
    """Which catalog columns play which role.

    ``id`` and ``title`` are required; ``text`` are further free-text fields (description, brand...);
    ``attributes`` are categorical/numeric fields used for filters, facets and attribute phrases;
    ``image`` holds a path (relative to ``image_root``) or an http(s) URL; ``image_root`` is the folder
    image paths resolve in and may not leave (default: the catalog file's folder).

    ``title`` and each ``text`` entry are a column name or a template naming columns in braces
    (``"{name} {type}"``, see :mod:`prodsearch.catalog.mapping`).
    """

    id: str
    title: str
    text: list[str] = field(default_factory=list)
    attributes: list[str] = field(default_factory=list)
    image: str | None = None
    image_root: str | None = None

    def to_dict(self) -> dict:
        out = asdict(self)
        if out["image_root"] is None:  # indexes written before image roots existed compare equal
            del out["image_root"]
        return out

    @classmethod
    def from_dict(cls, data: dict) -> ColumnMapping:
        known = {"id", "title", "text", "attributes", "image", "image_root"}
        unknown = set(data) - known
        if unknown:
            from prodsearch.errors import CatalogError

            raise CatalogError(
                f"unknown column-mapping keys {sorted(unknown)}; expected some of {sorted(known)}"
            )
        return cls(**data)


@dataclass
class Product:
    """One validated catalog row.

    ``image_path`` is absolute and already checked to exist and decode; ``image_hash`` is the
    SHA-256 of the image file bytes (the feature-cache key; identical files share features).
    """

    id: str
    title: str
    text: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, str] = field(default_factory=dict)
    image_path: str | None = None
    image_hash: str | None = None
    row: int | None = None  # 1-based data-row number in the source file, for messages

    def full_text(self) -> str:
        """Title followed by the free-text fields: what lexical and dense text indexing see."""
        parts = [self.title, *[v for v in self.text.values() if v]]
        return " \n".join(parts)

    def content_hash(self) -> str:
        """Hash of everything that affects indexing; unchanged hash => re-ingest does no work."""
        payload = json.dumps(
            [self.title, self.text, self.attributes, self.image_hash], sort_keys=True, ensure_ascii=False
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass
class RowProblem:
    """Why a catalog row was rejected: 1-based data-row number, product id if known, field, reason."""

    row: int | None
    id: str | None
    field: str | None
    reason: str

    def __str__(self) -> str:
        where = f"row {self.row}" if self.row is not None else "catalog"
        ident = f" (id {self.id!r})" if self.id else ""
        fld = f", field {self.field!r}" if self.field else ""
        return f"{where}{ident}{fld}: {self.reason}"

    def to_dict(self) -> dict:
        return asdict(self)
