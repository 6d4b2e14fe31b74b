"""The one settings object. Environment variables (PULSEBOARD_*) are read here and nowhere else."""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tortoise.backends.base.config_generator import expand_db_url

logger = logging.getLogger("pulseboard")

DEV_SECRET_FILE = Path(".pulseboard-secret")
PLACEHOLDER_SECRETS = {"", "changeme", "change-me", "secret", "dev", "development", "test", "please-change"}
MIN_SECRET_LENGTH = 32
# Signature algorithms accepted from a JWKS (public keys only: HS* with a public key as the
# secret would be algorithm confusion), and the ones accepted when none are configured.
JWT_ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
JWT_JWKS_DEFAULT_ALGORITHMS = ("RS256", "ES256")
JWT_SECRET_ALGORITHMS = ("HS256",)
ROLE_SOURCES = ("token", "server")


class SettingsError(ValueError):
    """Settings that the service refuses to start with."""


@dataclass(frozen=True)
class Settings:
    env: str = "development"
    database_url: str = "sqlite://./pulseboard.db"
    database_pool_min: int = 1  # PostgreSQL connections each worker keeps open
    database_pool_max: int = 10  # most PostgreSQL connections per worker (workers x this <= max_connections)
    database_acquire_timeout_seconds: float = 5.0  # wait for a pooled connection, then SERVICE_UNAVAILABLE
    database_statement_timeout_seconds: float = 30.0  # PostgreSQL statement_timeout of requests; 0: none
    broadcast_url: str = "memory://"
    # Prefix of broker channels; empty: derived from database_url (one namespace per database).
    broadcast_namespace: str = ""
    jwt_secret: str = ""
    # An identity provider's key set (RS256/ES256 tokens; HS256 and jwt_secret are then refused).
    jwt_jwks_url: str = ""
    # Accepted `alg`s; empty: RS256,ES256 with a JWKS URL, HS256 without.
    jwt_algorithms: tuple[str, ...] = ()
    # When set, a token's `iss` must equal jwt_issuer and its `aud` name one of jwt_audience.
    jwt_issuer: str = ""
    jwt_audience: tuple[str, ...] = ()
    # Longest `exp - iat` accepted (without `iat`: `exp - now`); 0 turns the limit off.
    jwt_max_lifetime_days: float = 30.0
    # How long fetched JWKS keys are used before the set is fetched again, and the least time
    # between two fetches (a token naming an unknown `kid` fetches at most that often).
    jwt_jwks_cache_seconds: float = 300.0
    jwt_jwks_refetch_seconds: float = 15.0
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    # Browser origins (scheme://host[:port], or "*") that may call the HTTP API (CORS) and open
    # WebSockets (others' handshakes are refused with 403). Requests without an Origin header
    # (not a browser) and same-origin ones need no entry. See `origins`.
    allowed_origins: tuple[str, ...] = ()
    metrics_interval_seconds: float = 30.0
    # A presence entry not refreshed by its worker's heartbeat (every third of it) for this long is
    # dropped: the worker died.
    presence_ttl_seconds: float = 30.0
    connection_init_timeout_seconds: float = 10.0
    max_subscriptions_per_connection: int = 100
    ws_per_message_deflate: bool = False
    max_body_bytes: int = 1024 * 1024
    # Operations one HTTP request may carry as a JSON array (a batch); 0 turns batching off.
    max_batch_size: int = 10
    max_ws_message_bytes: int = 256 * 1024
    mutations_per_second: float = 20.0
    mutation_burst: int = 40
    connections_per_user: int = 20
    # How long a worker trusts the user it made of a token's claims before reading it again.
    viewer_cache_seconds: float = 30.0
    # How long a mutation's answer is kept for retries with its idempotency key.
    idempotency_retention_seconds: float = 86_400.0
    # Where users' roles come from: `token` (the identity provider's `role` claim; the newest
    # token wins) or `server` (kept in the database, changed by setUserRole or `pulseboard role`).
    role_source: str = "token"
    # Sockets without a token: how many one client address may hold open, and how long one may
    # stay open without an operation running before it is closed.
    anonymous_connections_per_address: int = 20
    anonymous_socket_idle_seconds: float = 10.0
    # Deprecated: PULSEBOARD_CORS_ORIGINS, from when HTTP had a list of its own. Used (for HTTP
    # and WebSockets alike) only while PULSEBOARD_ALLOWED_ORIGINS is unset; from_env warns.
    cors_origins: tuple[str, ...] = ()
    shutdown_timeout_seconds: float = 10.0
    # Frames a socket's outbox holds before that subscriber catches up from the log instead.
    outbox_frames: int = 1000
    # How long delivery retries a database or broker error before closing the socket with 1013.
    delivery_retry_seconds: float = 30.0
    broker_timeout_seconds: float = 1.0  # Redis connect, PUBLISH or readiness PING; then the broker is down
    publish_queue_events: int = 10_000  # events queued per worker for the broker; past it, read from the log
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
    # Notification e-mail: smtp://[user:password@]host[:port] (STARTTLS when the server offers
    # it) or smtps:// (implicit TLS); empty: no e-mail is sent. mail_from is the From address;
    # public_url the base of the links to tasks and tickets in e-mails (empty: no link).
    smtp_url: str = ""
    mail_from: str = ""
    public_url: str = ""
    # A failed e-mail is tried again after mail_retry_seconds, doubled per attempt (at most an
    # hour), and given up after mail_max_attempts attempts.
    mail_retry_seconds: float = 30.0
    mail_max_attempts: int = 10
    # How often each worker looks for due-date reminders that have fallen due.
    reminder_interval_seconds: float = 30.0

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def origins(self) -> tuple[str, ...]:
        """The browser origins allowed over HTTP (CORS) and WebSockets alike, as browsers send
        them in `Origin` (lowercase, without a default port), so that both checks agree."""
        return tuple(_origin(value) for value in self.allowed_origins or self.cors_origins)

    def check(self) -> Settings:
        """Refuse settings that cannot work; return self so it chains."""
        if self.env not in ("development", "production"):
            raise SettingsError(f"PULSEBOARD_ENV must be development or production, not {self.env!r}")
        self._check_jwt()
        if (
            self.production
            and not self.jwt_jwks_url
            and (self.jwt_secret.lower() in PLACEHOLDER_SECRETS or len(self.jwt_secret) < MIN_SECRET_LENGTH)
        ):
            raise SettingsError(
                f"PULSEBOARD_JWT_SECRET must be set to a random value of at least {MIN_SECRET_LENGTH}"
                " characters in production"
            )
        source = "PULSEBOARD_ALLOWED_ORIGINS" if self.allowed_origins else "PULSEBOARD_CORS_ORIGINS"
        for value in self.allowed_origins or self.cors_origins:
            _origin(value, source)  # SettingsError for an entry that is not an origin
        if self.role_source not in ROLE_SOURCES:
            raise SettingsError(f"PULSEBOARD_ROLE_SOURCE must be token or server, not {self.role_source!r}")
        if self.log_format not in ("text", "json"):
            raise SettingsError(f"PULSEBOARD_LOG_FORMAT must be text or json, not {self.log_format!r}")
        if not (self.database_pool_max >= 1 and 0 <= self.database_pool_min <= self.database_pool_max):
            raise SettingsError("PULSEBOARD_DATABASE_POOL_MAX must be at least 1 and the pool minimum")
        if not (self.database_acquire_timeout_seconds > 0 and self.database_statement_timeout_seconds >= 0):
            raise SettingsError(
                "PULSEBOARD_DATABASE_ACQUIRE_TIMEOUT_SECONDS must be more than 0,"
                " PULSEBOARD_DATABASE_STATEMENT_TIMEOUT_SECONDS 0 (none) or more"
            )
        if not (self.broker_timeout_seconds > 0 and self.publish_queue_events >= 1):
            raise SettingsError(
                "PULSEBOARD_BROKER_TIMEOUT_SECONDS and PULSEBOARD_PUBLISH_QUEUE_EVENTS must be more than 0"
            )
        if self.workers < 1:
            raise SettingsError("PULSEBOARD_WORKERS must be at least 1")
        self._check_mail()
        if self.max_batch_size < 0:
            raise SettingsError("PULSEBOARD_MAX_BATCH_SIZE must be 0 (no batching) or more")
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

    def _check_jwt(self) -> None:
        if self.jwt_jwks_url:
            url = urlsplit(self.jwt_jwks_url)
            if url.scheme not in ("http", "https") or not url.hostname:
                raise SettingsError("PULSEBOARD_JWT_JWKS_URL must be an http:// or https:// URL")
            if self.production and url.scheme != "https" and not _loopback(url.hostname):
                raise SettingsError("PULSEBOARD_JWT_JWKS_URL must be https:// in production")
            if self.production and not (self.jwt_issuer and self.jwt_audience):
                raise SettingsError(
                    "PULSEBOARD_JWT_ISSUER and PULSEBOARD_JWT_AUDIENCE must be set with a JWKS URL in"
                    " production (else tokens the provider issued for other applications are accepted)"
                )
        allowed = JWT_ASYMMETRIC_ALGORITHMS if self.jwt_jwks_url else JWT_SECRET_ALGORITHMS
        if not set(self.jwt_algorithms) <= set(allowed):
            raise SettingsError(
                f"PULSEBOARD_JWT_ALGORITHMS must be among {','.join(allowed)}"
                f" {'with' if self.jwt_jwks_url else 'without'} PULSEBOARD_JWT_JWKS_URL"
            )
        if not (math.isfinite(self.jwt_max_lifetime_days) and self.jwt_max_lifetime_days >= 0):
            raise SettingsError("PULSEBOARD_JWT_MAX_LIFETIME_DAYS must be a number of days (0: no limit)")
        for name in (
            "jwt_jwks_cache_seconds",
            "jwt_jwks_refetch_seconds",
            "idempotency_retention_seconds",
            "presence_ttl_seconds",
            "reminder_interval_seconds",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise SettingsError(f"PULSEBOARD_{name.upper()} must be more than 0")

    def _check_mail(self) -> None:
        if self.smtp_url and not _url_of(self.smtp_url, ("smtp", "smtps")):
            raise SettingsError("PULSEBOARD_SMTP_URL must be smtp://[user:password@]host[:port] or smtps://...")
        if self.smtp_url and "@" not in self.mail_from:
            raise SettingsError("PULSEBOARD_MAIL_FROM must be an e-mail address with PULSEBOARD_SMTP_URL")
        if self.public_url and not _url_of(self.public_url, ("http", "https")):
            raise SettingsError("PULSEBOARD_PUBLIC_URL must be an http:// or https:// URL")
        if not (self.mail_retry_seconds > 0 and self.mail_max_attempts >= 1):
            raise SettingsError(
                "PULSEBOARD_MAIL_RETRY_SECONDS must be more than 0, PULSEBOARD_MAIL_MAX_ATTEMPTS at least 1"
            )


def _url_of(value: str, schemes: tuple[str, ...]) -> bool:
    """Whether `value` is a URL of one of `schemes` with a host (and a port that is a number)."""
    try:
        url = urlsplit(value)
        url.port  # noqa: B018 (reading it checks it)
    except ValueError:
        return False
    return url.scheme in schemes and bool(url.hostname)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(value: str, source: str = "PULSEBOARD_ALLOWED_ORIGINS") -> str:
    """`value` as a browser sends it in `Origin`: scheme://host[:port], lowercase, without a
    default port or a trailing slash; "*" (any origin) as it is."""
    if value == "*":
        return value
    try:
        url = urlsplit(value)
        port = url.port
    except ValueError:
        url, port = None, None
    if (
        url is None
        or url.scheme.lower() not in _DEFAULT_PORTS
        or not url.hostname
        or url.path not in ("", "/")
        or url.query
        or url.fragment
        or url.username is not None
    ):
        raise SettingsError(
            f"{source}: {value!r} is not an origin (https://host or"
            " https://host:port, without a path; or * for any)"
        )
    scheme = url.scheme.lower()
    host = f"[{url.hostname}]" if ":" in url.hostname else url.hostname
    return f"{scheme}://{host}" if port in (None, _DEFAULT_PORTS[scheme]) else f"{scheme}://{host}:{port}"


# Variables that were renamed: the old name is still read when the new one is unset, with one
# warning per process (every worker reads the environment; a warning per read would repeat).
RENAMED = {"PULSEBOARD_CORS_ORIGINS": "PULSEBOARD_ALLOWED_ORIGINS"}
_warned: set[str] = set()


def _warn_once(name: str, message: str, *args: object) -> None:
    if name not in _warned:
        _warned.add(name)
        logger.warning(message, *args)


def _renamed(env: Mapping[str, str], values: dict[str, Any]) -> None:
    """Old names of renamed variables: used while the new one is unset, ignored once it is set;
    either way a WARNING naming the new variable."""
    for old, new in RENAMED.items():
        if old not in env:
            continue
        if new in env:
            values.pop(old.removeprefix("PULSEBOARD_").lower(), None)
            _warn_once(
                old,
                "%s is ignored: %s is set, and applies to HTTP and WebSockets alike; remove %s",
                old,
                new,
                old,
            )
        else:
            _warn_once(
                old, "%s is deprecated: set %s instead (its origins now apply to WebSockets too)", old, new
            )


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
    _renamed(env, values)
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


def _connection(database_url: str, settings: Settings | None) -> str | dict[str, Any]:
    if not database_url.startswith(("postgres://", "asyncpg://")):
        return database_url
    config = expand_db_url(database_url)
    config["engine"] = "pulseboard.pool"  # asyncpg, with acquire_timeout bounding waits for the pool
    credentials = config["credentials"]
    credentials["reset"] = _keep_session
    if settings is not None:
        credentials["minsize"] = settings.database_pool_min
        credentials["maxsize"] = settings.database_pool_max
        credentials["acquire_timeout"] = settings.database_acquire_timeout_seconds
        server_settings = credentials.setdefault("server_settings", {})
        server_settings["statement_timeout"] = str(round(settings.database_statement_timeout_seconds * 1000))
    return config


def tortoise_config(database_url: str, settings: Settings | None = None) -> dict[str, Any]:
    """Tortoise configuration for our one app, with its shipped migrations. With `settings` (a
    serving worker), its pool size and timeouts apply; without (migrations, the command line),
    Tortoise's pool and no timeouts, so that a long migration is not cut short."""
    return {
        "connections": {"default": _connection(database_url, settings)},
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
