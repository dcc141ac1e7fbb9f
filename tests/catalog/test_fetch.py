"""The image-URL fetcher against a real local HTTP server: good, slow, huge, broken, redirecting
and flaky photos; per-row reports when a catalog lists URLs; the content-hash cache."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from catalog_fixtures import write_csv
from image_server import ImageServer

from prodsearch.catalog import read_catalog
from prodsearch.catalog.fetch import FetchOptions, ImageFetcher, is_url
from prodsearch.catalog.schema import ColumnMapping
from prodsearch.catalog.validate import problem_kind


@pytest.fixture
def server(tmp_path: Path):
    with ImageServer(tmp_path) as srv:
        yield srv


def options(tmp_path: Path, **kw) -> FetchOptions:
    base = dict(
        # generous for a loaded CI machine: /slow.jpg drips a byte every 0.2 s and never finishes anyway
        connect_timeout=2.0,
        read_timeout=3.0,
        max_bytes=512 * 1024,
        retries=2,
        backoff=0.01,
        cache=tmp_path / "c",
    )
    return FetchOptions(**{**base, **kw})


def test_is_url():
    assert is_url("https://cdn.shop/x.jpg") and is_url("HTTP://x/y.png")
    assert not is_url("images/x.jpg") and not is_url("ftp://x/y.jpg")


def test_each_kind_of_url_gets_the_expected_outcome(server: ImageServer, tmp_path: Path):
    fetcher = ImageFetcher(options(tmp_path))
    paths = [
        "/good.jpg", "/redirect.jpg", "/flaky.jpg", "/same-photo-other-url.jpg", "/slow.jpg", "/huge.jpg",
        "/huge-unannounced.jpg", "/broken.jpg", "/not-an-image.jpg", "/bomb.png", "/missing.jpg",
        "/redirect-loop.jpg",
    ]  # fmt: skip
    got = fetcher.fetch_many([server.url(p) for p in paths])
    kind = {
        p: (None if got[server.url(p)].error is None else problem_kind(got[server.url(p)].error))
        for p in paths
    }
    assert kind == {
        "/good.jpg": None,
        "/redirect.jpg": None,
        "/flaky.jpg": None,
        "/same-photo-other-url.jpg": None,
        "/slow.jpg": "image download failed",
        "/huge.jpg": "image too large",
        "/huge-unannounced.jpg": "image too large",
        "/broken.jpg": "truncated image",
        "/not-an-image.jpg": "undecodable image",
        "/bomb.png": "image too large",
        "/missing.jpg": "image download failed",
        "/redirect-loop.jpg": "image download failed",
    }
    good = got[server.url("/good.jpg")]
    assert Path(good.path).read_bytes() == ImageServer.GOOD
    assert good.sha256 == hashlib.sha256(ImageServer.GOOD).hexdigest()
    assert got[server.url("/redirect.jpg")].sha256 == good.sha256  # followed to the same photo
    assert got[server.url("/same-photo-other-url.jpg")].path == good.path  # stored once by content hash
    assert got[server.url("/flaky.jpg")].attempts == 3 and server.hits["/flaky.jpg"] == 3  # 2 x 503, then ok
    assert server.hits["/missing.jpg"] == 1  # a 404 is not retried
    assert server.hits["/slow.jpg"] == 3  # a timeout is: 1 + 2 retries
    assert "HTTP 404" in got[server.url("/missing.jpg")].error
    assert "redirect" in got[server.url("/redirect-loop.jpg")].error.lower()


def test_second_fetch_comes_from_the_cache_without_requests(server: ImageServer, tmp_path: Path):
    urls = [server.url("/good.jpg"), server.url("/other.jpg")]
    first = ImageFetcher(options(tmp_path)).fetch_many(urls)
    before = sum(server.hits.values())
    again = ImageFetcher(options(tmp_path)).fetch_many(urls)
    assert sum(server.hits.values()) == before
    assert all(r.from_cache for r in again.values())
    assert {u: r.sha256 for u, r in again.items()} == {u: r.sha256 for u, r in first.items()}


def test_unreachable_host_is_reported_not_raised(tmp_path: Path):
    res = ImageFetcher(options(tmp_path, retries=0)).fetch("http://127.0.0.1:9/x.jpg")  # discard port
    assert res.path is None and problem_kind(res.error) == "image download failed"


def test_catalog_with_image_urls_reports_each_failing_row(server: ImageServer, tmp_path: Path):
    rows = [
        {
            "id": "a",
            "title": "Red heel",
            "description": "",
            "colour": "red",
            "image": server.url("/good.jpg"),
        },
        {
            "id": "b",
            "title": "Moved",
            "description": "",
            "colour": "red",
            "image": server.url("/redirect.jpg"),
        },
        {"id": "c", "title": "Gone", "description": "", "colour": "red", "image": server.url("/missing.jpg")},
        {
            "id": "d",
            "title": "Broken",
            "description": "",
            "colour": "red",
            "image": server.url("/broken.jpg"),
        },
        {"id": "e", "title": "Blue", "description": "", "colour": "blue", "image": server.url("/other.jpg")},
    ]
    csv_path = write_csv(tmp_path / "shop" / "catalog.csv", rows)
    mapping = ColumnMapping("id", "title", ["description"], ["colour"], "image")
    res = read_catalog(csv_path, mapping, fetch_options=options(tmp_path))
    assert [p.id for p in res.products] == ["a", "b", "e"]
    assert [(p.row, p.id, p.field, problem_kind(p.reason)) for p in res.problems] == [
        (3, "c", "image", "image download failed"),
        (4, "d", "image", "truncated image"),
    ]
    assert all(Path(p.image_path).is_file() for p in res.products)
    assert res.products[0].image_hash == hashlib.sha256(ImageServer.GOOD).hexdigest()
