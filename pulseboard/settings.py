"""The one settings object. Environment variables (PULSEBOARD_*) are read here and nowhere else."""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from tortoise.backends.base.config_generator import expand_db_url

logger = logging.getLogger("pulseboard")

DEV_SECRET_FILE = Path(".pulseboard-secret")
PLACEHOLDER_SECRETS = {"", "changeme", "change-me", "secret", "dev", "development", "test", "please-change"}
MIN_SECRET_LENGTH = 32


class SettingsError(ValueError):
    """Settings that the service refuses to start with."""


@dataclass(frozen=True)
class Settings:
    env: str = "development"
    database_url: str = "sqlite://./pulseboard.db"
    broadcast_url: str = "memory://"
    # Prefix of broker channels; empty: derived from database_url (one namespace per database).
    broadcast_namespace: str = ""
    jwt_secret: str = ""
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    allowed_origins: tuple[str, ...] = ()
    metrics_interval_seconds: float = 30.0
    connection_init_timeout_seconds: float = 10.0
    max_subscriptions_per_connection: int = 100
    ws_per_message_deflate: bool = False
    max_body_bytes: int = 1024 * 1024
    max_ws_message_bytes: int = 256 * 1024
    mutations_per_second: float = 20.0
    mutation_burst: int = 40
    connections_per_user: int = 20
    # How long a worker trusts the user it made of a token's claims before reading it again.
    viewer_cache_seconds: float = 30.0
    # Sockets without a token: how many one client address may hold open, and how long one may
    # stay open without an operation running before it is closed.
    anonymous_connections_per_address: int = 20
    anonymous_socket_idle_seconds: float = 10.0
    cors_origins: tuple[str, ...] = ()
    shutdown_timeout_seconds: float = 10.0
    # Frames a socket's outbox holds before that subscriber catches up from the log instead.
    outbox_frames: int = 1000
    # How long delivery retries a database or broker error before closing the socket with 1013.
    delivery_retry_seconds: float = 30.0
    # Event-loop lag (ms) past which a worker answers new HTTP GraphQL requests 503 so that its
    # subscribers stay live; 0 turns shedding off.
    overload_lag_ms: float = 250.0
    max_query_depth: int = 12
    max_aliases: int = 30
    max_tokens: int = 2000
    # Estimated rows one operation (or one subscription event) may touch; see schema/documents.py.
    max_query_cost: int = 5000
    # The same estimate for one event of a subscription: it is paid per subscriber per event.
    max_subscription_event_cost: int = 100
    # Automatic persisted queries kept per worker: how many, how many bytes in all, and the
    # largest document that may be registered.
    persisted_queries_max_count: int = 2000
    persisted_queries_max_bytes: int = 8 * 1024 * 1024
    persisted_query_max_bytes: int = 32 * 1024
    page_size_default: int = 20
    page_size_max: int = 100
    introspection: bool = True
    log_level: str = "INFO"
    log_format: str = "text"
    # Bearer token that /metrics requires when set; in production /metrics is off without one.
    metrics_token: str = ""

    @property
    def production(self) -> bool:
        return self.env == "production"

    def check(self) -> Settings:
        """Refuse settings that cannot work; return self so it chains."""
        if self.env not in ("development", "production"):
            raise SettingsError(f"PULSEBOARD_ENV must be development or production, not {self.env!r}")
        if self.production and (
            self.jwt_secret.lower() in PLACEHOLDER_SECRETS or len(self.jwt_secret) < MIN_SECRET_LENGTH
        ):
            raise SettingsError(
                f"PULSEBOARD_JWT_SECRET must be set to a random value of at least {MIN_SECRET_LENGTH}"
                " characters in production"
            )
        if self.log_format not in ("text", "json"):
            raise SettingsError(f"PULSEBOARD_LOG_FORMAT must be text or json, not {self.log_format!r}")
        if self.workers < 1:
            raise SettingsError("PULSEBOARD_WORKERS must be at least 1")
        if self.workers > 1 and self.database_url.startswith("sqlite"):
            raise SettingsError(
                "--workers > 1 needs a server database: SQLite cannot be shared by several"
                " processes (set PULSEBOARD_DATABASE_URL=postgres://...)"
            )
        if self.workers > 1 and self.broadcast_url.startswith("memory"):
            raise SettingsError(
                "--workers > 1 needs a shared broadcast backend: memory:// reaches one process"
                " only (set PULSEBOARD_BROADCAST_URL=redis://...)"
            )
        return self


def _bool(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def _list(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _dev_secret(path: Path) -> str:
    """A development secret kept in a local file so tokens survive restarts."""
    if path.exists():
        return path.read_text().strip()
    secret = secrets.token_urlsafe(48)
    path.write_text(secret + "\n")
    path.chmod(0o600)
    logger.warning("PULSEBOARD_JWT_SECRET not set: generated a development secret in %s", path)
    return secret


_PARSERS: dict[str, Callable[[str], Any]] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": _bool,
    "tuple[str, ...]": _list,
}


def from_env(environ: Mapping[str, str] | None = None) -> Settings:
    """Read PULSEBOARD_<FIELD> variables into Settings (development secret generated if missing)."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for item in fields(Settings):
        raw = env.get(f"PULSEBOARD_{item.name.upper()}")
        if raw is not None:
            try:
                values[item.name] = _PARSERS[str(item.type)](raw)
            except ValueError:
                raise SettingsError(f"PULSEBOARD_{item.name.upper()}: cannot read {raw!r}") from None
    mode = values.get("env", Settings.env)
    if not values.get("jwt_secret") and mode == "development":
        values["jwt_secret"] = _dev_secret(DEV_SECRET_FILE)
    values.setdefault("introspection", mode == "development")
    return Settings(**values).check()


def export(settings: Settings, names: tuple[str, ...]) -> None:
    """Put `names` of `settings` into the environment, where uvicorn's app factory (in this
    process or in each spawned worker) reads its settings from: command-line overrides must
    reach the app as well as the server."""
    for name in names:
        value = getattr(settings, name)
        os.environ[f"PULSEBOARD_{name.upper()}"] = ",".join(value) if isinstance(value, tuple) else str(value)


def channel_namespace(settings: Settings) -> str:
    """Workers of one database share broker channels; other databases on the same Redis do not."""
    if settings.broadcast_namespace:
        return settings.broadcast_namespace
    return "pulseboard:" + hashlib.sha256(settings.database_url.encode()).hexdigest()[:12] + ":"


async def _keep_session(connection: Any) -> None:
    """What asyncpg runs when a connection goes back to its pool, instead of a RESET ALL round
    trip per query: we never change session state (no SET, LISTEN, advisory locks or cursors
    outlive a statement). Only a transaction left open (its request was cancelled midway) is
    rolled back, as asyncpg's own reset would."""
    if connection.is_in_transaction():
        await connection.execute("ROLLBACK")


def _connection(database_url: str) -> str | dict[str, Any]:
    if not database_url.startswith(("postgres://", "asyncpg://")):
        return database_url
    config = expand_db_url(database_url)
    config["credentials"]["reset"] = _keep_session
    return config


def tortoise_config(database_url: str) -> dict[str, Any]:
    """Tortoise configuration for our one app, with its shipped migrations."""
    return {
        "connections": {"default": _connection(database_url)},
        "apps": {
            "models": {
                "models": ["pulseboard.models"],
                "default_connection": "default",
                "migrations": "pulseboard.models.migrations",
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


def __getattr__(name: str) -> Any:
    # `tortoise -c pulseboard.settings.TORTOISE_ORM makemigrations` reads this; computed lazily so
    # importing the module has no side effects.
    if name == "TORTOISE_ORM":
        database_url = os.environ.get("PULSEBOARD_DATABASE_URL", Settings.database_url)
        return tortoise_config(database_url)
    raise AttributeError(name)
