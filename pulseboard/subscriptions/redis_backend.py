"""broadcaster's backend interface over Redis pub/sub, keeping itself connected.

broadcaster 0.3.1's own Redis backend never reconnects: when Redis restarts, its listener task
dies silently and every channel of the process goes quiet (measured here). This one reconnects
with backoff and re-subscribes its channels; what was published while it was away is caught up
from the event log by the hub."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from broadcaster import Event
from broadcaster._backends.base import BroadcastBackend
from redis import asyncio as redis
from redis.exceptions import RedisError

logger = logging.getLogger("pulseboard.hub")

# Always subscribed, so the pub/sub connection has something to listen on even with no topics.
HEARTBEAT = "pulseboard:heartbeat"
BACKOFF_MAX_SECONDS = 5.0


class SupervisedRedisBackend(BroadcastBackend):
    def __init__(self, url: str) -> None:
        self._url = url
        self._channels: set[str] = set()
        self._queue: asyncio.Queue[Event] = asyncio.Queue()
        self._pubsub: Any = None
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self.reconnects = 0

    async def connect(self) -> None:
        self._conn = redis.Redis.from_url(self._url)
        self._task = asyncio.create_task(self._listen())

    async def disconnect(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._conn.aclose()

    async def subscribe(self, channel: str) -> None:
        self._channels.add(channel)
        if self.connected.is_set():
            # On failure the listener re-subscribes every channel when it reconnects.
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.subscribe(channel)

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)
        if self.connected.is_set():
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.unsubscribe(channel)

    async def publish(self, channel: str, message: Any) -> None:
        await self._conn.publish(channel, message)

    async def next_published(self) -> Event:
        return await self._queue.get()

    async def _listen(self) -> None:
        delay = 0.1
        while True:
            pubsub = self._conn.pubsub()
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
