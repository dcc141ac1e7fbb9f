"""The image-path resolver against os.path.realpath (the reference), on a folder full of symlinks."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from prodsearch.catalog.validate import PathResolver, _Rejected


@pytest.fixture
def maze(tmp_path: Path) -> Path:
    root = tmp_path / "shop"
    (root / "images" / "deep").mkdir(parents=True)
    (tmp_path / "elsewhere" / "deep").mkdir(parents=True)
    for d in (
        root / "images",
        root / "images" / "deep",
        tmp_path / "elsewhere",
        tmp_path / "elsewhere" / "deep",
    ):
        (d / "x.jpg").write_bytes(b"x")
    (root / "images" / "in_link.jpg").symlink_to(root / "images" / "deep" / "x.jpg")
    (root / "images" / "out_link.jpg").symlink_to(tmp_path / "elsewhere" / "x.jpg")
    (root / "images" / "dir_in").symlink_to(root / "images" / "deep", target_is_directory=True)
    (root / "images" / "dir_out").symlink_to(tmp_path / "elsewhere" / "deep", target_is_directory=True)
    (root / "images" / "rel_out").symlink_to(Path("..") / ".." / "elsewhere")
    return root


def test_resolver_matches_realpath_and_containment(maze: Path):
    resolver = PathResolver(maze)
    real_root = os.path.realpath(maze)
    parts = [
        "images",
        "deep",
        "dir_in",
        "dir_out",
        "rel_out",
        "..",
        ".",
        "x.jpg",
        "in_link.jpg",
        "out_link.jpg",
    ]
    values = ["/".join(c) for n in (1, 2, 3) for c in itertools.product(parts, repeat=n)]
    values += [str(maze / "images" / "x.jpg"), str(maze.parent / "elsewhere" / "x.jpg"), "/etc/passwd"]
    inside = outside = 0
    for value in values:
        expected = os.path.realpath(os.path.join(maze, value))
        ok = expected == real_root or expected.startswith(real_root + os.sep)
        if ok:
            inside += 1
            assert resolver.resolve(value) == expected, value
        else:
            outside += 1
            with pytest.raises(_Rejected, match="escapes the catalog folder"):
                resolver.resolve(value)
    assert inside > 100 and outside > 100  # both branches well exercised
