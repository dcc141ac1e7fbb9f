"""Embedder factories for Ray actors (importable on the workers: the test puts this folder on PYTHONPATH).

``dying_embedder`` kills its own worker process (``os._exit``, no cleanup, as an OOM kill or a
lost node would) on chosen encode calls, to test that work survives dead actors.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from fakes import FakeImageEncoder, FakeTextEncoder
from prodsearch.encoders.base import Embedder


class _DyingImageEncoder(FakeImageEncoder):
    def __init__(self, marker: Path, die_on_call: int, every_process: bool):
        super().__init__()
        self.marker, self.die_on_call, self.every_process = marker, die_on_call, every_process

    def encode(self, items: Any, **kw: Any) -> Any:
        self.calls_here = getattr(self, "calls_here", 0) + 1
        if self.calls_here == self.die_on_call and (self.every_process or not self.marker.exists()):
            self.marker.write_text(str(os.getpid()))
            time.sleep(1.5)  # lets the driver take the batches finished before this one
            os._exit(1)
        return super().encode(items, **kw)

    spec = FakeImageEncoder.spec  # identical vectors and spec: only the process may die


def dying_embedder(marker: str, die_on_call: int = 1, every_process: bool = False) -> Embedder:
    """The fake embedder, whose image encoder kills the actor on its ``die_on_call``-th call.

    Once (when ``marker`` does not exist yet), or in every process if ``every_process``.
    """
    image = _DyingImageEncoder(Path(marker), die_on_call, every_process)
    image.name = "fake-image"
    return Embedder(FakeTextEncoder(), image, aligned=True, name="fake")


def register_fakes() -> None:
    """Ray ``worker_process_setup_hook``: registers the toy encoders by name in every worker."""
    import fakes  # noqa: F401


class _SlowImageEncoder(FakeImageEncoder):
    def __init__(self, delay: float):
        super().__init__()
        self.delay = delay

    def encode(self, items: Any, **kw: Any) -> Any:
        time.sleep(self.delay)
        return super().encode(items, **kw)

    spec = FakeImageEncoder.spec


def slow_embedder(delay: float) -> Embedder:
    """The fake embedder, whose image encoder takes ``delay`` seconds per call (a job to interrupt)."""
    image = _SlowImageEncoder(delay)
    image.name = "fake-image"
    return Embedder(FakeTextEncoder(), image, aligned=True, name="fake")
