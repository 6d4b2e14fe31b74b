"""Access notices: when a user's role changes, every worker forgets the viewer it cached for that
user and closes their sockets with 4403 "Access changed"; clients reconnect, authenticate again,
resubscribe with their cursors and are authorized as of now.

A notice is an event on topics.access(), written in the transaction that changed the role and
broadcast after commit like every other event. Each worker's watch hears it on the broker
channel of that topic (the hub's broadcast and namespace). While the worker has sockets open it
also checks the topic's head in the event log every sweep interval of the hub, so a notice the
broker lost, or one written by a process whose broadcast reaches no server (the `pulseboard
role` command over memory://), still closes those sockets within a second; without sockets
nothing is read in the background, and a cached viewer expires within viewer_cache_seconds
anyway. The watch is not one of the hub's topics: those are the clients' subscriptions, and come
and go with them. The worker that made a change applies it before
answering (notify()), so its own next request already sees the new role. What to forget and whom
to close is injected by the app."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

from pulseboard import telemetry
from pulseboard.subscriptions import closes, streams, topics
from pulseboard.subscriptions.encoding import EventMessage, decode
from pulseboard.subscriptions.hub import Hub, head

logger = logging.getLogger("pulseboard.access")

ROLE_CHANGED = "ROLE_CHANGED"
CLOSE_CODE = closes.FORBIDDEN  # with this reason clients retry: they reconnect and are authorized anew
CLOSE_REASON = closes.Reason.ACCESS_CHANGED
RETRY_SECONDS = 1.0


class AccessWatch:
    """This worker's reader of access notices: each one is acted on once, in seq order."""

    def __init__(
        self,
        hub: Hub,
        *,
        forget: Callable[[int], None],
        disconnect: Callable[[int], Awaitable[None]],
        sockets_open: Callable[[], bool] = lambda: True,
    ) -> None:
        self.hub = hub
        self._forget = forget
        self._disconnect = disconnect
        self._sockets_open = sockets_open
        self._tasks: list[asyncio.Task[None]] = []
        self._lock = asyncio.Lock()
        self._seen = 0  # the last seq read, live or from the log
        self._applied: set[int] = set()  # seqs applied by notify() that the watch has yet to read
        self.applied = 0  # notices acted on, for tests

    async def start(self) -> None:
        """Reads every notice committed from now on (subscribed once this returns)."""
        self._seen = await head(topics.access())
        subscribed = asyncio.Event()
        self._tasks = [
            asyncio.create_task(self._listen(subscribed)),
            asyncio.create_task(self._sweep_forever()),
        ]
        await subscribed.wait()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _listen(self, subscribed: asyncio.Event) -> None:
        channel = self.hub.namespace + topics.access()
        while True:
            try:
                async with self.hub.broadcast.subscribe(channel) as subscriber:
                    subscribed.set()
                    async for event in subscriber:  # type: ignore[union-attr]
                        if event is None:
                            break
                        try:
                            message = decode(event.message)
                        except ValueError:
                            logger.warning("dropped a malformed access notice")
                            continue
                        if message.topic == topics.access():
                            await self._advance(message.seq, message)
            except Exception as error:
                telemetry.log_limited(
                    logger, "access notices: listen failed", "listening for access notices failed: %r", error
                )
            finally:
                subscribed.set()  # start() never waits on a broker that is down: the sweep reads
            await asyncio.sleep(RETRY_SECONDS)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.hub.sweep_interval)
            if not self._sockets_open():
                continue
            try:
                await self._advance(await head(topics.access()))
            except Exception as error:
                telemetry.log_limited(
                    logger, "access notices: log read failed", "reading access notices failed: %r", error
                )

    async def _advance(self, upto: int, live: EventMessage | None = None) -> None:
        """Acts on every notice up to seq `upto`: those before `live` are read from the log."""
        async with self._lock:
            if upto <= self._seen:
                return
            last = upto if live is None else upto - 1
            if last > self._seen:
                async for stored in streams.replay(topics.access(), self._seen, last):
                    await self._take(stored)
            if live is not None and live.seq > self._seen:
                await self._take(live)

    async def _take(self, message: EventMessage) -> None:
        self._seen = message.seq
        if message.seq in self._applied:
            self._applied.discard(message.seq)
            return
        try:
            await self._apply(message)
        except Exception:
            logger.exception("applying access notice %s failed", message.seq)

    async def apply(self, messages: Iterable[EventMessage]) -> None:
        """Applies notices this worker just committed, ahead of the watch (once each)."""
        for message in messages:
            if message.topic != topics.access() or message.seq <= self._seen or message.seq in self._applied:
                continue
            self._applied.add(message.seq)
            try:
                await self._apply(message)
            except Exception:  # the change is committed; the request that made it still succeeds
                logger.exception("applying access notice %s failed", message.seq)

    async def _apply(self, message: EventMessage) -> None:
        if message.type != ROLE_CHANGED:
            return
        try:
            user_id = int(message.payload["userId"])
        except (KeyError, TypeError, ValueError):
            logger.warning("ignored a malformed access notice (seq %s)", message.seq)
            return
        self.applied += 1
        self._forget(user_id)  # first: a client reconnecting at once is read anew
        await self._disconnect(user_id)


_current: AccessWatch | None = None


def install(watch: AccessWatch | None) -> None:
    """Makes `watch` this process's watch (the app's lifespan does this, as for the hub)."""
    global _current
    _current = watch


async def notify(messages: Iterable[EventMessage]) -> None:
    """Applies committed access notices in this worker at once; the other workers hear them
    through the broker (or the log). Nothing to do in a process without a watch (the CLI)."""
    if _current is not None:
        await _current.apply(messages)
