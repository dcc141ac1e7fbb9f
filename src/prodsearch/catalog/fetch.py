"""Fetch catalog photos given as http(s) URLs, as shops' exports list them.

Downloads run concurrently in threads (socket I/O releases the GIL), each with a connect timeout
and a total read deadline, a byte cap checked against ``Content-Length`` and while streaming, and
the same pixel cap / decompression-bomb / truncation checks as local files. Transient failures
(connection errors, timeouts, HTTP 429 and 5xx) are retried with exponential back-off; 4xx are not.

Accepted photos are stored by content hash under ``cache_dir()/images/`` (identical photos at two
URLs are stored once) and each URL remembers its hash, so re-ingesting a catalog makes no request
for a URL that was fetched before. Standard library only.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import logging
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from prodsearch.catalog.images import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, check_image
from prodsearch.errors import ImageError
from prodsearch.paths import atomic_write_text, cache_dir

log = logging.getLogger(__name__)

URL_SCHEMES = ("http://", "https://")
_CHUNK = 64 * 1024
_FORMAT_EXT = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif"}


def is_url(value: str) -> bool:
    """Whether an image cell is a URL this module fetches (``http://`` or ``https://``)."""
    return value[:8].lower().startswith(URL_SCHEMES)


@dataclass(frozen=True)
class FetchOptions:
    """Limits of :func:`fetch_images`; the defaults suit product photos on a shop's CDN."""

    connect_timeout: float = 5.0  # seconds to connect, and the longest silence while reading
    read_timeout: float = 20.0  # seconds for the whole response body (a slow drip counts)
    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    retries: int = 2  # further attempts after a transient failure
    backoff: float = 0.5  # seconds before the first retry, doubled each time
    workers: int = 16
    max_redirects: int = 5
    cache: Path | None = None  # default: cache_dir() / "images"


@dataclass(frozen=True)
class FetchResult:
    """One URL's outcome: the cached file and its SHA-256, or ``error`` (starting with a problem kind)."""

    url: str
    path: str | None = None
    sha256: str | None = None
    error: str | None = None
    attempts: int = 0
    from_cache: bool = False


class _Transient(Exception):
    """A failure worth retrying (timeout, connection reset, 429, 5xx)."""


class _Permanent(Exception):
    """A failure that retrying will not fix; ``args[0]`` is the problem reason."""


class _Redirects(urllib.request.HTTPRedirectHandler):
    def __init__(self, limit: int):
        super().__init__()
        self.max_redirections = limit

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D401 - urllib hook
        if not is_url(newurl):
            raise _Permanent(f"image download failed: redirected to a non-http URL {newurl!r}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class ImageFetcher:
    """Fetches and caches photos by URL; thread-safe, one instance per ingest."""

    def __init__(self, options: FetchOptions | None = None):
        self.options = options or FetchOptions()
        self.root = Path(self.options.cache or cache_dir() / "images")
        self._opener = urllib.request.build_opener(_Redirects(self.options.max_redirects))
        self._opener.addheaders = [("User-Agent", "prodsearch-image-fetcher/1"), ("Accept", "image/*")]

    # ------------------------------------------------------------------ public
    def fetch_many(self, urls: Sequence[str], *, progress: bool = False) -> dict[str, FetchResult]:
        """Fetch each distinct URL once, concurrently; returns url -> result."""
        distinct = list(dict.fromkeys(urls))
        if not distinct:
            return {}
        from tqdm.auto import tqdm

        out: dict[str, FetchResult] = {}
        with (
            ThreadPoolExecutor(max_workers=max(1, self.options.workers), thread_name_prefix="fetch") as pool,
            tqdm(total=len(distinct), desc="fetching images", unit="img", disable=not progress) as bar,
        ):
            for res in pool.map(self.fetch, distinct):
                out[res.url] = res
                bar.update(1)
        failed = sum(r.error is not None for r in out.values())
        cached = sum(r.from_cache for r in out.values())
        log.info("fetched %d image URLs: %d from cache, %d failed", len(out), cached, failed)
        return out

    def fetch(self, url: str) -> FetchResult:
        """Fetch one URL (from the cache when it was fetched before); never raises for a bad URL."""
        known = self._cached(url)
        if known is not None:
            return known
        opts = self.options
        attempt, delay = 0, opts.backoff
        while True:
            attempt += 1
            try:
                data = self._download(url)
                path, digest = self._store(url, data)
                return FetchResult(url, path=path, sha256=digest, attempts=attempt)
            except _Permanent as err:
                return FetchResult(url, error=str(err.args[0]), attempts=attempt)
            except _Transient as err:
                if attempt > opts.retries:
                    reason = f"image download failed: {url} ({err.args[0]}; {attempt} attempts)"
                    return FetchResult(url, error=reason, attempts=attempt)
                time.sleep(delay)
                delay *= 2

    # ------------------------------------------------------------------ internals
    def _url_record(self, url: str) -> Path:
        return self.root / "urls" / (hashlib.sha256(url.encode("utf-8")).hexdigest() + ".json")

    def _cached(self, url: str) -> FetchResult | None:
        try:
            rec = json.loads(self._url_record(url).read_text(encoding="utf-8"))
            path = self.root / rec["file"]
        except (OSError, ValueError, KeyError):
            return None
        if not path.is_file():
            return None
        return FetchResult(url, path=str(path), sha256=rec["sha256"], from_cache=True)

    def _download(self, url: str) -> bytes:
        opts = self.options
        try:
            resp = self._opener.open(urllib.request.Request(url), timeout=opts.connect_timeout)
        except _Permanent:
            raise
        except urllib.error.HTTPError as err:
            if err.code == 429 or err.code >= 500:
                raise _Transient(f"HTTP {err.code} {err.reason}") from None
            raise _Permanent(f"image download failed: {url} (HTTP {err.code} {err.reason})") from None
        except urllib.error.URLError as err:
            reason = err.reason
            if isinstance(reason, _Permanent):
                raise reason from None
            if isinstance(reason, (TimeoutError, socket.timeout)):
                raise _Transient(f"no connection within {opts.connect_timeout:g}s") from None
            if isinstance(reason, socket.gaierror):
                raise _Permanent(f"image download failed: {url} (unknown host: {reason})") from None
            if "redirect" in str(err).lower():
                raise _Permanent(f"image download failed: {url} ({err.reason})") from None
            raise _Transient(f"connection failed: {reason}") from None
        except TimeoutError:
            raise _Transient(f"no response within {opts.connect_timeout:g}s") from None
        except (OSError, http.client.HTTPException) as err:
            raise _Transient(f"connection failed: {err}") from None
        with resp:
            length = resp.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > opts.max_bytes:
                raise _Permanent(
                    f"image too large: {url} announces {int(length)} bytes, over the {opts.max_bytes}-byte cap"
                )
            deadline = time.monotonic() + opts.read_timeout
            chunks, size = [], 0
            try:
                while True:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise _Transient(f"body not received within {opts.read_timeout:g}s")
                    chunk = resp.read1(_CHUNK)  # each wait is bounded by the socket timeout
                    if not chunk:
                        break
                    size += len(chunk)
                    if size > opts.max_bytes:
                        raise _Permanent(f"image too large: {url} is over the {opts.max_bytes}-byte cap")
                    chunks.append(chunk)
            except TimeoutError:
                raise _Transient(f"body not received within {opts.read_timeout:g}s") from None
            except (OSError, http.client.HTTPException) as err:  # IncompleteRead, reset
                raise _Transient(f"connection broke while reading: {err.__class__.__name__}") from None
        return b"".join(chunks)

    def _store(self, url: str, data: bytes) -> tuple[str, str]:
        opts = self.options
        try:
            check_image(data, max_pixels=opts.max_pixels, max_bytes=opts.max_bytes, name=url)
        except ImageError as err:
            msg = str(err)
            kind = "truncated image" if "truncated" in msg else (
                "image too large" if ("bomb" in msg or "cap" in msg) else "undecodable image"
            )  # fmt: skip
            raise _Permanent(f"{kind}: {msg}") from None
        digest = hashlib.sha256(data).hexdigest()
        with Image.open(io.BytesIO(data)) as img:
            ext = _FORMAT_EXT.get(img.format or "", ".img")
        rel = f"{digest[:2]}/{digest}{ext}"
        path = self.root / rel
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        record = self._url_record(url)
        record.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(record, json.dumps({"url": url, "sha256": digest, "file": rel}))
        return str(path), digest
