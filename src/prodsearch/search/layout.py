"""On-disk layout of a prodsearch index folder and its manifest.

```
INDEX/
  manifest.json     format version, embedder spec, column mapping, source, counts, settings
  products.sqlite   the product store (catalog/store.py)
  vectors/          one vector backend per vector kind ("text", "image", ...), each with the log
                    sequence number it includes (``applied_seq``)
  lexical/          the BM25 index, likewise
  .writer.lock      advisory lock held by the one process writing (search/writer.py)
  ingest-report.json  rows rejected by the last ingest
```
The product store also holds the operation log; see :mod:`prodsearch.search.writer` for how the
three components stay consistent. The manifest (written atomically) holds the configuration.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prodsearch.errors import IndexNotFoundError
from prodsearch.paths import atomic_write_text

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
STORE = "products.sqlite"
VECTORS = "vectors"
LEXICAL = "lexical"
REPORT = "ingest-report.json"
#: "joint": product photos in a trained model's shared space (indexes built with ``--model RUN``).
VECTOR_KINDS = ("text", "image", "joint")


@dataclass
class Manifest:
    embedder: dict[str, Any]
    mapping: dict[str, Any]
    source: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    model_run: str | None = None
    backend: str = "faiss"  # the vector backend (prodsearch.index.backend.BACKENDS) that wrote vectors/
    format_version: int = FORMAT_VERSION
    updated_at: str | None = None

    def vector_params(self) -> dict[str, Any]:
        """What the index's vector backends are made with: the embedded index kind, its
        ``--index-option`` settings, and a remote backend's location and options."""
        return {
            "kind": self.settings.get("index_kind", "auto"),
            **self.settings.get("index_params", {}),
            **self.settings.get("backend_params", {}),
        }

    def save(self, root: str | Path) -> None:
        atomic_write_text(Path(root) / MANIFEST, json.dumps(asdict(self), indent=2, sort_keys=True))

    @classmethod
    def load(cls, root: str | Path) -> Manifest:
        path = Path(root) / MANIFEST
        if not path.is_file():
            raise IndexNotFoundError(
                f"no prodsearch index at {root} (missing {MANIFEST}); build one with: prodsearch index CATALOG --out {root}"
            )
        try:
            data = json.loads(path.read_text("utf-8"))
        except json.JSONDecodeError as err:
            raise IndexNotFoundError(
                f"{path} is not valid JSON ({err}); the index is corrupt, rebuild it"
            ) from err
        if data.get("format_version") != FORMAT_VERSION:
            raise IndexNotFoundError(
                f"{path}: index format {data.get('format_version')!r} is not supported (expected {FORMAT_VERSION}); rebuild it"
            )
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def is_index(root: str | Path) -> bool:
    return (Path(root) / MANIFEST).is_file()
