"""Settings come from PRODSEARCH_* variables or a dotenv file and are validated at start."""

from __future__ import annotations

import pytest

from prodsearch.errors import ConfigError
from prodsearch.service.settings import Settings, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    import os

    for key in list(os.environ):
        if key.startswith("PRODSEARCH_"):
            monkeypatch.delenv(key)


def test_defaults_disable_writes():
    s = load_settings()
    assert s.api_token is None and not s.writes_enabled
    assert s.max_k == Settings.model_fields["max_k"].default


def test_environment_overrides(monkeypatch):
    monkeypatch.setenv("PRODSEARCH_API_TOKEN", "s3cret-token")
    monkeypatch.setenv("PRODSEARCH_MAX_K", "7")
    monkeypatch.setenv("PRODSEARCH_REQUEST_TIMEOUT_S", "2.5")
    s = load_settings()
    assert s.api_token.get_secret_value() == "s3cret-token" and s.writes_enabled
    assert (s.max_k, s.request_timeout_s) == (7, 2.5)
    assert "s3cret" not in repr(s)  # the token never shows in logs


def test_env_file_and_environment_wins(monkeypatch, tmp_path):
    f = tmp_path / "prodsearch.env"
    f.write_text("PRODSEARCH_MAX_K=9\nPRODSEARCH_MAX_OFFSET=99\n")
    monkeypatch.setenv("PRODSEARCH_MAX_OFFSET", "5")
    s = load_settings(f)
    assert (s.max_k, s.max_offset) == (9, 5)
    monkeypatch.setenv("PRODSEARCH_ENV_FILE", str(f))
    assert load_settings().max_k == 9
    with pytest.raises(ConfigError, match="settings file not found"):
        load_settings(tmp_path / "missing.env")


@pytest.mark.parametrize(
    "var, value, words",
    [
        ("PRODSEARCH_MAX_K", "zero", "PRODSEARCH_MAX_K"),
        ("PRODSEARCH_MAX_K", "0", "greater than or equal to 1"),
        ("PRODSEARCH_REQUEST_TIMEOUT_S", "-1", "PRODSEARCH_REQUEST_TIMEOUT_S"),
        ("PRODSEARCH_API_TOKEN", "short", "at least 8 characters"),
        ("PRODSEARCH_LOG_LEVEL", "loud", "log_level 'loud'"),
    ],
)
def test_invalid_values_fail_at_start_naming_the_variable(monkeypatch, var, value, words):
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError, match=words):
        load_settings()


def test_blank_token_means_writes_disabled(monkeypatch):
    monkeypatch.setenv("PRODSEARCH_API_TOKEN", "  ")
    assert not load_settings().writes_enabled


def test_create_app_validates_settings_from_environment(monkeypatch, tiny_engine):
    from prodsearch.service.app import create_app

    monkeypatch.setenv("PRODSEARCH_MAX_UPLOAD_BYTES", "12")
    with pytest.raises(ConfigError, match="PRODSEARCH_MAX_UPLOAD_BYTES"):
        create_app(tiny_engine)
