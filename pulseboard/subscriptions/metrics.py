"""The queue-metrics engine: per worker, one computation per watched queue, shared by all its
watchers. Ticket events trigger a recomputation after a short quiet period (coalescing bursts);
a periodic tick refreshes the time-based figures. Watchers hold only the newest snapshot."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

T = TypeVar("T")


class Inbox(Protocol):
    """What the engine needs of a topic listener (the hub's Listener)."""

    async def get(self) -> object: ...

    def pending(self) -> int: ...


# Listens on a topic for the duration of a block (the hub's `listen`).
Listen = Callable[[str], AbstractAsyncContextManager[Inbox]]

COALESCE_SECONDS = 0.25


class Watcher(Generic[T]):
    """A slot for the newest snapshot: a slow reader skips stale ones instead of queueing them."""

    def __init__(self) -> None:
        self._value: T | None = None
        self._fresh = asyncio.Event()

    def put(self, value: T) -> None:
        self._value = value
        self._fresh.set()

    async def next(self) -> T:
        await self._fresh.wait()
        self._fresh.clear()
        assert self._value is not None
        return self._value


@dataclass
class _Queue(Generic[T]):
    watchers: set[Watcher[T]] = field(default_factory=set)
    latest: T | None = None
    task: asyncio.Task[None] | None = None
    listening: asyncio.Event = field(default_factory=asyncio.Event)


class MetricsEngine:
    def __init__(self, listen: Listen, *, interval: float, coalesce: float = COALESCE_SECONDS) -> None:
        self.listen = listen
        self.interval = interval
        self.coalesce = coalesce
        self._queues: dict[str, _Queue[Any]] = {}

    @property
    def watched(self) -> dict[str, int]:
        return {topic: len(q.watchers) for topic, q in self._queues.items()}

    @contextlib.asynccontextmanager
    async def watch(
        self,
        topic: str,
        compute: Callable[[], Awaitable[T]],
        same: Callable[[T, T], bool],
    ) -> AsyncIterator[Watcher[T]]:
        """A watcher of `topic`'s figures; its first snapshot is computed at once, after the topic
        is listened to, so no change can fall between the two."""
        watcher: Watcher[T] = Watcher()
        entry = self._queues.get(topic)
        if entry is None:
            entry = self._queues[topic] = _Queue()
            entry.task = asyncio.create_task(self._run(topic, entry, compute, same))
        entry.watchers.add(watcher)
        try:
            await entry.listening.wait()
            watcher.put(await compute())
            yield watcher
        finally:
            entry.watchers.discard(watcher)
            if not entry.watchers and self._queues.get(topic) is entry:
                del self._queues[topic]
                assert entry.task is not None
                entry.task.cancel()
                await asyncio.gather(entry.task, return_exceptions=True)

    async def _run(
        self,
        topic: str,
        entry: _Queue[T],
        compute: Callable[[], Awaitable[T]],
        same: Callable[[T, T], bool],
    ) -> None:
        try:
            async with self.listen(topic) as listener:
                entry.listening.set()
                await self._refresh(entry, listener, compute, same)
        finally:
            entry.listening.set()

    async def _refresh(
        self,
        entry: _Queue[T],
        listener: Inbox,
        compute: Callable[[], Awaitable[T]],
        same: Callable[[T, T], bool],
    ) -> None:
        entry.latest = await compute()
        while True:
            try:
                await asyncio.wait_for(listener.get(), timeout=self.interval)
                await asyncio.sleep(self.coalesce)  # let the rest of a burst arrive
                while listener.pending():
                    await listener.get()
            except TimeoutError:
                pass
            snapshot = await compute()
            if entry.latest is None or not same(snapshot, entry.latest):
                entry.latest = snapshot
                for watcher in list(entry.watchers):
                    watcher.put(snapshot)

    async def close(self) -> None:
        tasks = [q.task for q in self._queues.values() if q.task is not None]
        self._queues.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
