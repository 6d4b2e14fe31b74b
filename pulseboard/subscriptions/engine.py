"""The delivery engine: the way from a committed event to a socket, for every subscription of
this worker.

    hub (one broker subscription per topic)
      -> cohorts (one execution and serialisation per event and cohort)
        -> outbox (per socket: bounded, one writer)
          -> socket

The engine is handed the subscription's plan (made by the schema layer, which knows how to
execute) and serves it until it ends: the client completes it or goes away, its access ends
(an AppError: `next` with the error, then `complete`), or the database stays unreachable past
the delivery bound (the socket is closed with 1013, which graphql-ws clients retry)."""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from pulseboard.errors import AppError
from pulseboard.subscriptions.cohorts import Cohorts, Retry, Unavailable
from pulseboard.subscriptions.encoding import EventMessage
from pulseboard.subscriptions.hub import Hub
from pulseboard.subscriptions.outbox import Outbox

TRY_AGAIN = 1013
SNAPSHOTS = 1024


class Feed(Protocol):
    topic: str
    after: int | None
    gated: frozenset[str]

    def admit(self, message: EventMessage) -> bool: ...


class Plan(Protocol):
    key: Hashable
    render: Callable[[Any], Awaitable[str]]
    feed: Feed | None
    watch: AbstractAsyncContextManager[Any] | None


@dataclass
class Ended:
    """Why a subscription ended on the server's side: its access ended (`error`), or nothing
    could be delivered within the bound (`unavailable`)."""

    error: AppError | None = None
    unavailable: Unavailable | None = None


class Engine:
    def __init__(self, hub: Hub, *, retry_seconds: float) -> None:
        self.hub = hub
        self.retry_seconds = retry_seconds
        self.cohorts = Cohorts(hub, retry_seconds=retry_seconds)
        # The newest rendered snapshot per cohort key of snapshot subscriptions (queueMetrics):
        # watchers of one queue with one selection are sent one serialisation.
        self._snapshots: OrderedDict[Hashable, tuple[object, asyncio.Task[str]]] = OrderedDict()

    async def serve(self, plan: Plan, *, id: str, outbox: Outbox) -> Ended:
        """Delivers `plan` into `outbox` under operation `id` until it ends."""
        if plan.feed is not None:
            return await self._serve_feed(plan, plan.feed, id, outbox)
        assert plan.watch is not None
        return await self._serve_snapshots(plan, plan.watch, id, outbox)

    async def _serve_feed(self, plan: Plan, feed: Feed, id: str, outbox: Outbox) -> Ended:
        try:
            member = await self.cohorts.join(
                plan.key,
                feed.topic,
                plan.render,
                id=id,
                outbox=outbox,
                admit=feed.admit,
                gated=feed.gated,
                after=feed.after,
            )
        except Unavailable as error:
            return Ended(unavailable=error)
        try:
            outcome = await member.finished
        finally:
            await self.cohorts.leave(member)
        if isinstance(outcome, AppError):
            return Ended(error=outcome)
        if isinstance(outcome, Unavailable):
            return Ended(unavailable=outcome)
        return Ended()

    async def _serve_snapshots(
        self, plan: Plan, watch: AbstractAsyncContextManager[Any], id: str, outbox: Outbox
    ) -> Ended:
        prefix = '{"id":' + json.dumps(id) + ',"type":"next","payload":'
        try:
            async with watch as watcher:
                while not outbox.closed:
                    snapshot = await watcher.next()
                    await outbox.put(prefix + await self._snapshot_payload(plan, snapshot) + "}")
        except Unavailable as error:
            return Ended(unavailable=error)
        except AppError as error:  # access ended (a member removed from presence's project)
            return Ended(error=error)
        return Ended()

    async def _snapshot_payload(self, plan: Plan, snapshot: object) -> str:
        cached = self._snapshots.get(plan.key)
        if cached is None or cached[0] is not snapshot:
            self.cohorts.stats["snapshot renders"] += 1
            retry = Retry(self.retry_seconds, self.cohorts.stats, "rendering a snapshot")
            task = asyncio.create_task(retry.call(lambda: plan.render(snapshot)))
            cached = self._snapshots[plan.key] = (snapshot, task)
            while len(self._snapshots) > SNAPSHOTS:
                self._snapshots.popitem(last=False)
        self._snapshots.move_to_end(plan.key)
        return await asyncio.shield(cached[1])

    async def close(self) -> None:
        await self.cohorts.close()
        for _, task in self._snapshots.values():
            task.cancel()
        self._snapshots.clear()
