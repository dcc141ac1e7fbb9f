"""Encoder tests write every cache (ONNX exports, feature stores) under a per-test folder."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PRODSEARCH_CACHE", str(tmp_path / "cache"))
    yield


@pytest.fixture(scope="module")
def random_lite0():
    """A random-weight EfficientNet-Lite0 backbone at 32 px (fast; weights fixed by the seed)."""
    import torch

    from prodsearch.encoders.image import build_backbone

    torch.manual_seed(0)
    return build_backbone("lite0", 32, pretrained=False)


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    # The test machine is shared: torch's intra-op thread barriers stall when another process
    # holds a core (seconds per forward). One thread keeps the suite fast and deterministic.
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
