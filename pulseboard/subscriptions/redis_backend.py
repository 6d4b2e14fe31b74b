"""broadcaster's backend interface over Redis pub/sub, keeping itself connected.

broadcaster 0.3.1's own Redis backend never reconnects: when Redis restarts, its listener task
dies silently and every channel of the process goes quiet (measured here). This one reconnects
with backoff and re-subscribes its channels; what was published while it was away is caught up
from the event log by the hub."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from broadcaster import Event
from broadcaster._backends.base import BroadcastBackend
from redis import asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

logger = logging.getLogger("pulseboard.hub")

# Always subscribed, so the pub/sub connection has something to listen on even with no topics.
HEARTBEAT = "pulseboard:heartbeat"
BACKOFF_MAX_SECONDS = 5.0
TIMEOUT_SECONDS = 1.0


class SupervisedRedisBackend(BroadcastBackend):
    def __init__(self, url: str, timeout: float = TIMEOUT_SECONDS) -> None:
        self._url = url
        self._timeout = timeout
        self._channels: set[str] = set()
        self._queue: asyncio.Queue[Event] = asyncio.Queue()
        self._pubsub: Any = None
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self.reconnects = 0

    async def connect(self) -> None:
        # Commands (PUBLISH, PING) give up after `timeout`, on connect, write or read, and are not
        # retried: redis-py's default retries a timeout three times with backoff (seconds of a
        # hung broker per publish). What is not published the hub's sweep delivers.
        self._conn = redis.Redis.from_url(
            self._url,
            socket_timeout=self._timeout,
            socket_connect_timeout=self._timeout,
            retry=Retry(NoBackoff(), 0),
        )
        # The pub/sub connection waits for messages as long as there are none (a read timeout
        # would drop an idle one), so only its connects are bounded.
        self._listener_conn = redis.Redis.from_url(self._url, socket_connect_timeout=self._timeout)
        self._task = asyncio.create_task(self._listen())

    async def disconnect(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._conn.aclose()
        await self._listener_conn.aclose()

    async def subscribe(self, channel: str) -> None:
        self._channels.add(channel)
        if self.connected.is_set():
            await self._pubsub_command(self._pubsub.subscribe, channel)

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)
        if self.connected.is_set():
            await self._pubsub_command(self._pubsub.unsubscribe, channel)

    async def _pubsub_command(self, command: Any, channel: str) -> None:
        """(Un)subscribes within the timeout (a hung broker must not hold the hub); on failure
        the listener starts over on a new connection, subscribing every channel there."""
        try:
            async with asyncio.timeout(self._timeout):
                await command(channel)
        except (RedisError, OSError, TimeoutError):
            previous = self._task
            if previous is not None:
                previous.cancel()
            self._task = asyncio.create_task(self._listen(after=previous))

    async def publish(self, channel: str, message: Any) -> None:
        await self._conn.publish(channel, message)

    async def ping(self) -> None:
        """Raises unless the broker answers within the timeout."""
        await self._conn.execute_command("PING")

    async def next_published(self) -> Event:
        return await self._queue.get()

    async def _listen(self, after: asyncio.Task[None] | None = None) -> None:
        if after is not None:  # a listener being replaced finishes (and clears its state) first
            await asyncio.gather(after, return_exceptions=True)
        delay = 0.1
        while True:
            pubsub = self._listener_conn.pubsub()
            try:
                await pubsub.subscribe(HEARTBEAT, *self._channels)
                self._pubsub = pubsub
                self.connected.set()
                delay = 0.1
                async for message in pubsub.listen():
                    if message["type"] == "message":
                        channel = message["channel"].decode(errors="replace")
                        text = message["data"].decode(errors="replace")
                        self._queue.put_nowait(Event(channel=channel, message=text))
            except (RedisError, OSError) as error:
                if self.connected.is_set():
                    logger.warning("lost Redis pub/sub (%s); reconnecting", error)
                    self.reconnects += 1
            finally:
                self.connected.clear()
                self._pubsub = None
                await asyncio.shield(pubsub.aclose())
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX_SECONDS)
