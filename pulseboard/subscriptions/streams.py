"""Event streams for subscribers: replay from the log, then live, in seq order, no gap or duplicate."""

from __future__ import annotations

from collections.abc import AsyncIterator

from pulseboard.models import Event
from pulseboard.subscriptions.encoding import EventMessage, from_row
from pulseboard.subscriptions.hub import Hub, head

BATCH = 500


async def replay(topic: str, after: int, upto: int | None = None) -> AsyncIterator[EventMessage]:
    """Committed events of `topic` with after < seq (<= upto), from the event log."""
    while True:
        query = Event.filter(topic=topic, seq__gt=after)
        if upto is not None:
            query = query.filter(seq__lte=upto)
        rows = await query.order_by("seq").limit(BATCH)
        for row in rows:
            yield from_row(row)
            after = row.seq
        if len(rows) < BATCH:
            return


async def events(hub: Hub, topic: str, after: int | None) -> AsyncIterator[EventMessage]:
    """Every event of `topic` after seq `after` (None: from now on), in seq order, exactly once.

    A topic's seqs are handed out under a row lock held to commit, so when seq n is published,
    every seq before it is committed: a gap (reordered or lost message, or an overflowed inbox)
    is filled from the log at once, without waiting."""
    async with hub.listen(topic) as listener:
        last = await head(topic) if after is None else after
        async for stored in replay(topic, last):
            yield stored
            last = stored.seq
        while True:
            message = await listener.get()
            if message is None or message.seq > last + 1:
                async for missed in replay(topic, last, None if message is None else message.seq - 1):
                    yield missed
                    last = missed.seq
            if message is not None and message.seq > last:
                yield message
                last = message.seq
