"""Domain exceptions. Each subclasses a builtin so callers can catch either.

Only the HTTP service maps these to status codes; the CLI prints ``str(err)`` as one line.
"""

from __future__ import annotations


class ProdsearchError(Exception):
    """Base class of every error prodsearch raises on purpose."""


class CatalogError(ProdsearchError, ValueError):
    """A catalog file, row or column mapping is invalid."""


class ImageError(ProdsearchError, ValueError):
    """An image is missing, undecodable, truncated or too large."""


class ConfigError(ProdsearchError, ValueError):
    """A configuration has an unknown or out-of-range field."""


class EncoderError(ProdsearchError, ValueError):
    """An encoder name is unknown or a checkpoint cannot be loaded."""


class EncoderMismatchError(ProdsearchError, ValueError):
    """An index was built with a different encoder than the one used to open/query it."""


class IndexNotFoundError(ProdsearchError, FileNotFoundError):
    """No prodsearch index at the given path."""


class QueryError(ProdsearchError, ValueError):
    """A search query is empty or malformed."""


class ProductNotFoundError(ProdsearchError, KeyError):
    """A product id does not exist in the store."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else "product not found"


class ClusterConnectionError(ProdsearchError, ConnectionError):
    """A distributed engine (Ray cluster, Milvus server) at a given address cannot be reached or used."""


class MissingDependencyError(ProdsearchError, ImportError):
    """An optional dependency is not installed."""


def require(module: str, extra: str):
    """Import ``module`` lazily, or raise an error naming the extra that provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(
            f"{module!r} is not installed; install it with: pip install 'prodsearch[{extra}]'"
        ) from err
