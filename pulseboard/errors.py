"""Error codes clients can rely on, and the one exception type resolvers raise."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from enum import StrEnum
from typing import Any

import asyncpg
from graphql import GraphQLError
from tortoise.exceptions import DBConnectionError


class ErrorCode(StrEnum):
    UNAUTHENTICATED = "UNAUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"
    NOT_FOUND = "NOT_FOUND"
    BAD_USER_INPUT = "BAD_USER_INPUT"
    CONFLICT = "CONFLICT"
    # An idempotency key sent again with a different document, operation or variables.
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
    RATE_LIMITED = "RATE_LIMITED"
    QUERY_TOO_COMPLEX = "QUERY_TOO_COMPLEX"
    BAD_REQUEST = "BAD_REQUEST"
    GRAPHQL_PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
    GRAPHQL_VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"
    # Retryable: nothing was done (the overload shedding refused the request, or the database
    # was unavailable, timed out or rolled the transaction back); try again after the Retry-After
    # header (or retryAfterSeconds). See DatabaseFault for the database's cases.
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
    INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR"


class AppError(Exception):
    """An expected failure whose message and code are safe to show to the client."""

    def __init__(self, code: ErrorCode, message: str, **extensions: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.extensions = {"code": code.value, **extensions}

    def to_graphql(self) -> GraphQLError:
        return GraphQLError(self.message, extensions=self.extensions, original_error=self)


def unauthenticated(message: str = "Authentication required.") -> AppError:
    return AppError(ErrorCode.UNAUTHENTICATED, message)


def forbidden(message: str = "You do not have access to this resource.") -> AppError:
    return AppError(ErrorCode.FORBIDDEN, message)


def not_found(kind: str, id: object) -> AppError:
    return AppError(ErrorCode.NOT_FOUND, f"{kind} {id} not found.")


def bad_input(field: str, message: str) -> AppError:
    return AppError(ErrorCode.BAD_USER_INPUT, message, field=field)


def conflict(kind: str, id: object, current_version: int) -> AppError:
    return AppError(
        ErrorCode.CONFLICT,
        f"{kind} {id} was changed by someone else (current version {current_version}).",
        currentVersion=current_version,
    )


# --- database faults ----------------------------------------------------------------------------

RETRY_AFTER_SECONDS = 1  # as the overload shedding's (limits.Shed)


class DatabaseFault(StrEnum):
    """A database failure that says nothing about the request: clients get SERVICE_UNAVAILABLE
    with retryAfterSeconds, and the operator one log line per kind and interval."""

    UNAVAILABLE = "database unavailable"  # refused, lost, starting up, shutting down, no slot
    TIMEOUT = "database timeout"  # statement_timeout, lock_timeout, SQLite's busy timeout
    CONFLICT = "transaction conflict"  # serialization failure (40001), deadlock (40P01)

    @property
    def message(self) -> str:
        return _MESSAGES[self]

    def error(self) -> AppError:
        return AppError(ErrorCode.SERVICE_UNAVAILABLE, self.message, retryAfterSeconds=RETRY_AFTER_SECONDS)


_MESSAGES = {
    DatabaseFault.UNAVAILABLE: "The database is unavailable; the operation did not complete"
    " (what it began was rolled back). Retry shortly.",
    DatabaseFault.TIMEOUT: "The database did not finish in time; the transaction was rolled back"
    " and is safe to retry.",
    DatabaseFault.CONFLICT: "The transaction conflicted with concurrent ones and was rolled back;"
    " it is safe to retry.",
}

# PostgreSQL SQLSTATEs by class (two characters) or code.
_SQLSTATES = {
    "08": DatabaseFault.UNAVAILABLE,  # connection exceptions
    "53": DatabaseFault.UNAVAILABLE,  # insufficient resources: too many connections, disk full
    "57P01": DatabaseFault.UNAVAILABLE,  # admin_shutdown (terminating connection)
    "57P02": DatabaseFault.UNAVAILABLE,  # crash_shutdown
    "57P03": DatabaseFault.UNAVAILABLE,  # cannot_connect_now: starting up, shutting down
    "57P05": DatabaseFault.UNAVAILABLE,  # idle_session_timeout
    "25P03": DatabaseFault.UNAVAILABLE,  # idle_in_transaction_session_timeout
    "57014": DatabaseFault.TIMEOUT,  # query_canceled: statement_timeout
    "55P03": DatabaseFault.TIMEOUT,  # lock_not_available: lock_timeout, NOWAIT
    "40001": DatabaseFault.CONFLICT,  # serialization_failure
    "40P01": DatabaseFault.CONFLICT,  # deadlock_detected
}
# The conflicts the server retries itself (resolvers/events.py `retrying`).
RETRIED_SQLSTATES = frozenset({"40001", "40P01"})
_DRIVERS = ("asyncpg", "tortoise", "aiosqlite", "sqlite3")
_SQLITE_UNAVAILABLE = ("unable to open database file", "disk i/o error")
_SQLITE_BUSY = ("database is locked", "database table is locked")


def _chain(error: BaseException | None) -> Iterator[BaseException]:
    """`error` and what it was raised from (Tortoise wraps the driver's exceptions); the error it
    was raised while handling, too, when a driver raised it."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        driver = type(error).__module__.startswith(_DRIVERS)
        error = error.__cause__ or (error.__context__ if driver else None)


def _from_driver(error: BaseException) -> bool:
    tb = error.__traceback__
    while tb is not None:
        if str(tb.tb_frame.f_globals.get("__name__", "")).startswith(_DRIVERS):
            return True
        tb = tb.tb_next
    return False


def sqlstate(error: BaseException | None) -> str | None:
    """The PostgreSQL SQLSTATE behind `error`, if any."""
    for cause in _chain(error):
        state = getattr(cause, "sqlstate", None)
        if isinstance(state, str):
            return state
    return None


def database_fault(error: BaseException | None) -> DatabaseFault | None:
    """Which database fault `error` is (through the exceptions it was raised from), or None for
    anything else: a bug, or a failure the request caused."""
    for cause in _chain(error):
        if isinstance(cause, (AppError, GraphQLError)):
            return None
        state = getattr(cause, "sqlstate", None)
        if isinstance(state, str):
            found = _SQLSTATES.get(state) or _SQLSTATES.get(state[:2])
            if found is not None or isinstance(cause, asyncpg.PostgresError):
                return found  # a PostgreSQL error of another kind is no fault of availability
        if isinstance(cause, (asyncpg.InterfaceError, DBConnectionError)):
            return DatabaseFault.UNAVAILABLE  # ConnectionDoesNotExistError among them
        if isinstance(cause, sqlite3.OperationalError):
            text = str(cause).lower()
            if text.startswith(_SQLITE_BUSY):
                return DatabaseFault.TIMEOUT
            if text.startswith(_SQLITE_UNAVAILABLE):
                return DatabaseFault.UNAVAILABLE
        if isinstance(cause, (OSError, TimeoutError)) and _from_driver(cause):
            return DatabaseFault.UNAVAILABLE  # refused, reset, connect or pool timeout
    return None


def retried_conflict(error: BaseException) -> bool:
    """A serialization failure or deadlock: the transaction was rolled back, and running the
    whole unit of work again may succeed."""
    return sqlstate(error) in RETRIED_SQLSTATES and database_fault(error) is DatabaseFault.CONFLICT
