"""Service settings: one validated object read from ``PRODSEARCH_*`` environment variables and,
optionally, a dotenv file (``PRODSEARCH_ENV_FILE`` or ``load_settings(env_file=...)``).

Environment variables win over the file. Invalid values fail at start with a message naming the
variable, never at the first request.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from prodsearch.errors import ConfigError

MiB = 1024 * 1024


class Settings(BaseSettings):
    """Limits and security of the HTTP service (env var = ``PRODSEARCH_`` + upper-cased field name)."""

    model_config = SettingsConfigDict(env_prefix="PRODSEARCH_", extra="ignore", frozen=True)

    api_token: SecretStr | None = Field(
        None, description="Bearer token for POST/DELETE /products; writes are disabled (403) when unset."
    )
    max_upload_bytes: int = Field(
        10 * MiB, ge=1024, description="Cap on a request body (and an image upload)."
    )
    max_image_pixels: int = Field(25_000_000, ge=1, description="Cap on width*height of an uploaded image.")
    max_k: int = Field(100, ge=1, le=10_000, description="Largest page size a client may ask for.")
    max_offset: int = Field(1000, ge=0, description="Deepest offset a client may page to.")
    max_text_chars: int = Field(1000, ge=1, description="Longest query text accepted.")
    request_timeout_s: float = Field(
        10.0, gt=0, le=600, description="Engine calls slower than this answer 504."
    )
    default_k: int = Field(12, ge=1, description="Page size when the client gives none.")
    title: str = Field("prodsearch", description="Name shown in the web page and the OpenAPI docs.")
    log_level: str = Field("info", description="uvicorn log level.")
    interaction_log: Path | None = Field(
        None,
        description="Opt-in: append text searches (their first results as 'view' events) and POST /events "
        "(clicks, add-to-cart, purchases) to this JSONL interaction log; /events answers 403 when unset.",
    )

    @field_validator("api_token", mode="before")
    @classmethod
    def _empty_token_is_none(cls, v: object) -> object:
        return None if isinstance(v, str) and not v.strip() else v

    @field_validator("api_token")
    @classmethod
    def _token_long_enough(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and len(v.get_secret_value()) < 8:
            raise ValueError("api_token must be at least 8 characters (use a long random string)")
        return v

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, v: str) -> str:
        levels = ("critical", "error", "warning", "info", "debug", "trace")
        if v.lower() not in levels:
            raise ValueError(f"log_level {v!r} is not one of {levels}")
        return v.lower()

    @property
    def writes_enabled(self) -> bool:
        return self.api_token is not None


def load_settings(env_file: str | Path | None = None, **overrides: object) -> Settings:
    """Read and validate settings; raise :class:`ConfigError` naming each bad variable."""
    env_file = env_file or os.environ.get("PRODSEARCH_ENV_FILE")
    if env_file and not Path(env_file).is_file():
        raise ConfigError(f"settings file not found: {env_file}")
    try:
        return Settings(_env_file=env_file, **overrides)  # type: ignore[call-arg]
    except ValidationError as err:
        problems = "; ".join(
            f"PRODSEARCH_{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in err.errors()
        )
        raise ConfigError(f"invalid service settings: {problems}") from err
