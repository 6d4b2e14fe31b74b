"""Write transactions that record their events: a change and its Event rows commit together."""

from __future__ import annotations

import asyncio
import contextvars
import copy
import datetime as dt
import enum
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tortoise import timezone
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.expressions import F
from tortoise.fields import DatetimeField
from tortoise.models import Model
from tortoise.transactions import in_transaction

from pulseboard import telemetry
from pulseboard.errors import retried_conflict
from pulseboard.models import Event
from pulseboard.subscriptions import hub, topics
from pulseboard.subscriptions.encoding import from_row

M = TypeVar("M", bound=Model)
T = TypeVar("T")

# A unit of work runs at most this often after serialization failures or deadlocks; then the
# client gets SERVICE_UNAVAILABLE (rolled back, safe to retry).
RETRY_ATTEMPTS = 3
RETRY_BACKOFF_SECONDS = 0.02  # doubled per attempt, jittered (0 to that)

_NEXT_SEQ = (
    "INSERT INTO topic_counters (topic, seq) VALUES ({p}, 1) "
    "ON CONFLICT (topic) DO UPDATE SET seq = topic_counters.seq + 1 RETURNING seq"
)


async def next_seq(conn: BaseDBAsyncClient, topic: str) -> int:
    """The topic's next seq. The counter row stays locked until commit, so a topic's seqs are
    gap-free and in commit order."""
    placeholder = "$1" if conn.capabilities.dialect == "postgres" else "?"
    # execute_query_dict, not execute_query: Tortoise's asyncpg client drops the rows of any
    # statement that starts with INSERT, RETURNING included.
    rows = await conn.execute_query_dict(_NEXT_SEQ.format(p=placeholder), [topic])
    return int(rows[0]["seq"])


@dataclass
class _Pending:
    topic: str
    type: str
    payload: dict[str, Any]


@dataclass
class Transaction:
    conn: BaseDBAsyncClient
    actor_id: int | None
    events: list[Event] = field(default_factory=list)
    _pending: list[_Pending] = field(default_factory=list)

    def emit(self, topic: str, type: str, payload: dict[str, Any]) -> None:
        """Record an event; it is numbered and written when the transaction ends."""
        self._pending.append(_Pending(topic, type, payload))

    async def _flush(self) -> None:
        # Counters are taken in one global topic order (stable within a topic), so concurrent
        # transactions touching the same topics cannot deadlock.
        for pending in sorted(self._pending, key=lambda p: topics.lock_order(p.topic)):
            seq = await next_seq(self.conn, pending.topic)
            event = await Event.create(
                topic=pending.topic,
                seq=seq,
                type=pending.type,
                payload=pending.payload,
                actor_id=self.actor_id,
                using_db=self.conn,
            )
            self.events.append(event)
        self._pending.clear()


@dataclass
class _Attempt:
    parent: _Attempt | None
    committed: bool = False


_attempt: contextvars.ContextVar[_Attempt | None] = contextvars.ContextVar("pulseboard_attempt", default=None)
# Events of transactions nested in holding_events(), published when it commits.
_held: contextvars.ContextVar[list[Event] | None] = contextvars.ContextVar("pulseboard_held", default=None)


async def retrying(
    work: Callable[[], Awaitable[T]],
    *,
    attempts: int = RETRY_ATTEMPTS,
    backoff: float = RETRY_BACKOFF_SECONDS,
) -> T:
    """`work()`, a whole unit of work (its reads and its transaction), run again when the
    database rolled it back as a serialization failure (40001) or a deadlock (40P01): at most
    `attempts` runs, after a jittered, doubling backoff. Never once a transaction() of it
    committed: running it again would repeat what is done (and published)."""
    for attempt in range(1, attempts + 1):
        state = _Attempt(_attempt.get())
        token = _attempt.set(state)
        try:
            return await work()
        except Exception as error:
            if attempt == attempts or state.committed or not retried_conflict(error):
                raise
        finally:
            _attempt.reset(token)
        telemetry.TRANSACTION_RETRIES.inc()
        await asyncio.sleep(random.uniform(0, backoff * 2 ** (attempt - 1)))
    raise AssertionError("unreachable")


@asynccontextmanager
async def transaction(actor_id: int | None) -> AsyncIterator[Transaction]:
    """A database transaction whose emitted events are written inside it, just before commit,
    and published to subscribers after it commits (never for a rolled-back change). Publishing
    only queues them (the hub sends them off the request path, in commit order): a slow or hung
    broker never holds the answer, and what it fails to carry subscribers read from the log."""
    async with in_transaction() as conn:
        tx = Transaction(conn=conn, actor_id=actor_id)
        yield tx
        await tx._flush()
    attempt = _attempt.get()
    while attempt is not None:  # retrying() must not run this unit (or one around it) again
        attempt.committed, attempt = True, attempt.parent
    if (held := _held.get()) is not None:
        held.extend(tx.events)  # a savepoint of holding_events(): not committed yet
    else:
        await _publish(tx.events)


@asynccontextmanager
async def holding_events() -> AsyncIterator[BaseDBAsyncClient]:
    """One transaction around whole units of work: the transaction()s inside it are savepoints,
    and their events are published only once this one commits (never if it rolls back)."""
    held: list[Event] = []
    token = _held.set(held)
    try:
        async with in_transaction() as conn:
            yield conn
    finally:
        _held.reset(token)
    await _publish(held)


async def _publish(events: list[Event]) -> None:
    if events and (live := hub.current()) is not None:
        await live.publish([from_row(event) for event in events])


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value


def snapshot(obj: Model) -> dict[str, Any]:
    """The row as JSON-ready data (enums by name, datetimes ISO 8601), for event payloads."""
    return {name: _plain(getattr(obj, name)) for name in obj._meta.db_fields}


async def update_versioned(conn: BaseDBAsyncClient, obj: M, **values: Any) -> M | None:
    """Writes `values` to `obj`'s row only if the row still has `obj`'s version (never a lost
    write), with the next version and a new updated_at. The row as now stored, built from `obj`
    and what was written (Tortoise's update_from_dict converts each value as a read would), not
    read back; None when another write changed the row first."""
    now, version = timezone.now(), obj.version  # type: ignore[attr-defined]
    changed = (
        await type(obj)
        .filter(pk=obj.pk, version=version)
        .using_db(conn)
        .update(**values, version=F("version") + 1, updated_at=now)
    )
    if changed == 0:
        return None
    return copy.copy(obj).update_from_dict({**values, "version": version + 1, "updated_at": now})


def restore(model: type[M], data: dict[str, Any]) -> M:
    """A detached model instance from a snapshot() (the object's state at an event)."""
    fields_map = model._meta.fields_map
    values: dict[str, Any] = {}
    for name, value in data.items():
        field = fields_map.get(name)
        enum_type = getattr(field, "enum_type", None)
        if value is not None and enum_type is not None:
            value = enum_type[value]
        elif isinstance(value, str) and isinstance(field, DatetimeField):
            value = dt.datetime.fromisoformat(value)
        values[name] = value
    return model(**values)


def change(field_name: str, before: Any, after: Any) -> dict[str, Any]:
    """One entry of an event's `changes`, values rendered as text."""

    def text(value: Any) -> str | None:
        plain = _plain(value)
        return None if plain is None else str(plain)

    return {"field": field_name, "from": text(before), "to": text(after)}
