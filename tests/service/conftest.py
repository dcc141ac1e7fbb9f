"""Fixtures for the HTTP service: an app over the tiny engine with small, test-sized limits."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from service_helpers import make_settings

from prodsearch.service.app import create_app


@pytest.fixture
def make_client(tiny_engine):
    """Build a TestClient over the tiny engine with test settings plus ``overrides``."""
    clients = []

    def make(raise_server_exceptions: bool = True, **overrides) -> TestClient:
        app = create_app(tiny_engine, make_settings(**overrides))
        client = TestClient(app, raise_server_exceptions=raise_server_exceptions)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture
def client(make_client) -> TestClient:
    return make_client()


@pytest.fixture
def photos(tiny_catalog) -> Path:
    return tiny_catalog.parent / "images"
