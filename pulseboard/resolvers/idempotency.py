"""Idempotent mutations: a request that carries an idempotency key (the `Idempotency-Key` header,
or `extensions.idempotencyKey` of a socket operation) runs at most once per user and key.

The operation runs in one database transaction that also claims the key and stores its answer,
so either the change and its answer are both committed or neither is. A retry with the same key
gets the stored answer and changes nothing; the same key with a different request is refused
(IDEMPOTENCY_KEY_REUSED). Two requests with one key at once: the second waits on the first's
claim (PostgreSQL's unique index; SQLite runs one write transaction at a time), then replays it.
An answer that says nothing was done (every root field failed retryably: the database was
unavailable, rate limiting) is rolled back with its claim, so a retry runs afresh. Keys are kept
for PULSEBOARD_IDEMPOTENCY_RETENTION_SECONDS."""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from pulseboard.errors import AppError, ErrorCode
from pulseboard.models import IdempotencyKey
from pulseboard.resolvers.events import holding_events

T = TypeVar("T")

MAX_KEY_LENGTH = 255
PRUNE_INTERVAL_SECONDS = 60.0  # how often a worker deletes expired keys (after a keyed request)

# The key the running request or socket operation carries (set by the transport).
requested: contextvars.ContextVar[str | None] = contextvars.ContextVar("pulseboard_idempotency", default=None)


def parse_key(value: object) -> str:
    """A usable key: 1 to 255 visible ASCII characters (a UUID, say)."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_KEY_LENGTH or not _visible(value):
        raise AppError(
            ErrorCode.BAD_REQUEST,
            f"An idempotency key must be 1 to {MAX_KEY_LENGTH} visible ASCII characters.",
        )
    return value


@contextlib.contextmanager
def carrying(value: object) -> Iterator[None]:
    """The request or socket operation in this block carries `value` as its key (None: none);
    an unusable key raises BAD_REQUEST."""
    if value is None:
        yield
        return
    token = requested.set(parse_key(value))
    try:
        yield
    finally:
        requested.reset(token)


def _visible(text: str) -> bool:
    return all("!" <= char <= "~" for char in text)


def fingerprint(query: str, operation_name: str | None, variables: Any) -> str:
    """What identifies a request for its key: the document, operation name and variables."""
    text = json.dumps([query, operation_name, variables], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Keyed:
    user_id: int
    key: str
    fingerprint: str


class _Undo(Exception):
    def __init__(self, answer: Any) -> None:
        self.answer = answer


_last_prune = 0.0


async def once(
    request: Keyed,
    run: Callable[[], Awaitable[T]],
    *,
    encode: Callable[[T], dict[str, Any] | None],
    replay: Callable[[dict[str, Any]], T],
    retention_seconds: float,
) -> T:
    """`run()` once for the request's key: its answer (`encode`d; None means nothing was done,
    so nothing is kept) is stored with its change; a later request with the key gets `replay` of
    it. The events of the change are published once the whole transaction commits."""
    now = dt.datetime.now(dt.UTC)
    try:
        async with holding_events() as conn:
            await IdempotencyKey.filter(
                user_id=request.user_id, key=request.key, expires_at__lt=now
            ).using_db(conn).delete()
            claim = IdempotencyKey(
                user_id=request.user_id,
                key=request.key,
                fingerprint=request.fingerprint,
                answer=None,
                created_at=now,
                expires_at=now + dt.timedelta(seconds=retention_seconds),
            )
            await IdempotencyKey.bulk_create([claim], ignore_conflicts=True, using_db=conn)
            row = await IdempotencyKey.filter(user_id=request.user_id, key=request.key).using_db(conn).get()
            if row.answer is not None:  # answered before (no claimed row is committed unanswered)
                if row.fingerprint != request.fingerprint:
                    raise _reused()
                return replay(row.answer)
            answer = await run()
            stored = encode(answer)
            if stored is None:
                raise _Undo(answer)
            row.answer = stored
            await row.save(using_db=conn, update_fields=["answer"])
    except _Undo as undo:
        return undo.answer  # type: ignore[no-any-return]
    await _prune(now)
    return answer


def _reused() -> AppError:
    return AppError(
        ErrorCode.IDEMPOTENCY_KEY_REUSED,
        "This idempotency key was used with a different request; use a new key for a new request.",
    )


async def _prune(now: dt.datetime) -> None:
    global _last_prune
    if time.monotonic() - _last_prune < PRUNE_INTERVAL_SECONDS:
        return
    _last_prune = time.monotonic()
    await IdempotencyKey.filter(expires_at__lt=now).delete()
