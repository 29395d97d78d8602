"""All of botter's settings, read from the environment (and a .env file)."""

import contextlib
import ipaddress
import os
import secrets
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from botter.errors import BotterError

TELEGRAM_API_URL = "https://api.telegram.org"


class SettingsError(BotterError):
    """Settings that cannot work; the message is one line naming the setting."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    database_url: str | None = None
    # A streaming replica for reads that may be seconds stale (listings); never the money path.
    database_replica_url: str | None = None
    redis_url: str | None = None
    telegram_api_url: str = TELEGRAM_API_URL
    public_url: str | None = None
    port: int = Field(3000, ge=1, le=65535)
    botter_data_dir: Path = Path(".botter")
    # Newest first: the first key encrypts and signs, every key decrypts and verifies.
    botter_secret_keys: Annotated[tuple[str, ...], NoDecode] = ()
    webhook_body_limit_bytes: int = Field(1024 * 1024, ge=1024)
    db_pool_size: int = Field(10, ge=1, le=500)
    invite_link_ttl_s: int = Field(24 * 3600, ge=60)
    default_reminder_offsets: Annotated[tuple[int, ...], NoDecode] = (3 * 86400, 86400)
    sweep_interval_s: float = Field(5.0, gt=0)
    # How often the leader asks Telegram about every bot's webhook (getWebhookInfo).
    bot_health_interval_s: float = Field(60.0, gt=0)
    # How often the leader compares each bot's Star transactions with the ledger and
    # settles any payment whose update was lost.
    reconcile_interval_s: float = Field(600.0, gt=0)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # json for log collectors, console for people; auto picks console on a terminal.
    log_format: Literal["auto", "json", "console"] = "auto"
    # Inbox consumers and job runners each; a worker holds up to twice this many
    # connections in transactions at once (see docs/scaling.md).
    worker_concurrency: int = Field(4, ge=1, le=64)
    # `botter worker` serves its own /metrics here (0: none); web instances use PORT.
    worker_metrics_port: int = Field(3001, ge=0, le=65535)
    redis_max_connections: int = Field(50, ge=2, le=10_000)
    # Proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (addresses or CIDRs,
    # comma-separated, or *); anyone else's are ignored, so clients cannot pick their
    # address for rate limits and logs.
    trusted_proxies: Annotated[tuple[str, ...], NoDecode] = ("127.0.0.1",)
    # A subscriber's commands and button presses, per bot ("N/period", limits' notation).
    subscriber_actions_limit: str = "10/10 seconds"
    # Failed webhook authentications per client address (a secret or bot id being guessed).
    webhook_auth_failures_limit: str = "20/minute"
    breaker_failure_threshold: int = Field(5, ge=1)
    breaker_open_s: float = Field(10.0, gt=0)
    breaker_max_open_s: float = Field(300.0, gt=0)
    breaker_close_after: int = Field(3, ge=1)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _addresses(cls, proxies: tuple[str, ...]) -> tuple[str, ...]:
        for proxy in proxies:
            if proxy != "*":
                ipaddress.ip_network(proxy, strict=False)  # ValueError names the bad one
        return proxies

    @field_validator("subscriber_actions_limit", "webhook_auth_failures_limit")
    @classmethod
    def _limit(cls, value: str) -> str:
        from limits import parse

        parse(value)  # ValueError: "couldn't parse rate limit string ..."
        return value

    @field_validator("botter_secret_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(key.strip() for key in value.split(",") if key.strip())
        return value

    @field_validator("botter_secret_keys")
    @classmethod
    def _long_enough(cls, keys: tuple[str, ...]) -> tuple[str, ...]:
        if any(len(key) < 32 for key in keys):
            raise ValueError("each key must be at least 32 characters")
        return keys

    @field_validator("default_reminder_offsets", mode="before")
    @classmethod
    def _parse_offsets(cls, value: object) -> object:
        if isinstance(value, str):
            from botter.durations import parse_duration_s

            return tuple(parse_duration_s(part) for part in value.split(",") if part.strip())
        return value

    @field_validator("database_url", "database_replica_url")
    @classmethod
    def _postgres_only(cls, value: str | None) -> str | None:
        if value and not value.startswith(("postgresql://", "postgres://", "postgresql+")):
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("telegram_api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        # Without the trailing slash, so https://api.telegram.org/ is not taken for a sandbox.
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("redis_url")
    @classmethod
    def _redis_only(cls, value: str | None) -> str | None:
        if value:
            from botter.redis_client import parse_redis_url

            parse_redis_url(value)  # ValueError saying what is wrong
        return value

    @cached_property
    def uses_sandbox(self) -> bool:
        return self.telegram_api_url != TELEGRAM_API_URL

    def keys_or_generated(self) -> tuple[str, ...]:
        """The secret keys; in local mode, generated once into the data dir."""
        if self.botter_secret_keys:
            return self.botter_secret_keys
        key_file = self.botter_data_dir / "secret.key"
        if not key_file.exists():
            _create_key_file(key_file)
        key = key_file.read_text().strip()
        if len(key) < 32:
            raise SettingsError(f"invalid key file {key_file}: shorter than 32 characters")
        return (key,)


def _create_key_file(key_file: Path) -> None:
    """Write a new key, readable by its owner only from the first byte on.

    It is written under a temporary name and linked into place, so two processes starting
    at once agree on one key and neither reads a half-written file.
    """
    key_file.parent.mkdir(parents=True, exist_ok=True)
    temporary = key_file.with_name(f".{key_file.name}.{secrets.token_hex(8)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as out:
            out.write(secrets.token_urlsafe(48))
        with contextlib.suppress(FileExistsError):
            os.link(temporary, key_file)
    finally:
        temporary.unlink(missing_ok=True)


def load_settings(**overrides: object) -> Settings:
    """Read settings; any invalid value fails with one line that names it."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        first = error.errors()[0]
        name = ".".join(str(part) for part in first["loc"]).upper() or "settings"
        raise SettingsError(f"invalid setting {name}: {first['msg']}") from None
