"""Catalog ingest: column mappings, readers with per-row validation, safe images, the product store."""

from __future__ import annotations

from prodsearch.catalog.images import DEFAULT_MAX_PIXELS, check_image, file_sha256, load_image
from prodsearch.catalog.mapping import detect_mapping, load_mapping, mapping_from_dict
from prodsearch.catalog.readers import (
    CatalogReadResult,
    read_catalog,
    summarize_problems,
    write_problem_report,
)
from prodsearch.catalog.schema import ColumnMapping, Product, RowProblem
from prodsearch.catalog.store import ProductStore, SyncResult, UpsertResult

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "CatalogReadResult",
    "ColumnMapping",
    "Product",
    "ProductStore",
    "RowProblem",
    "SyncResult",
    "UpsertResult",
    "check_image",
    "detect_mapping",
    "file_sha256",
    "load_image",
    "load_mapping",
    "mapping_from_dict",
    "read_catalog",
    "summarize_problems",
    "write_problem_report",
]
