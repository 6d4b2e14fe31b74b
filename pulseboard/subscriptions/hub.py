"""The per-worker hub: one broadcaster subscription per topic with local listeners, each message
decoded once and handed to every local listener through a bounded queue."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TypeVar

from broadcaster import Broadcast

from pulseboard import telemetry
from pulseboard.models import TopicCounter
from pulseboard.subscriptions.encoding import EventMessage, decode, encode
from pulseboard.subscriptions.metrics import MetricsEngine

logger = logging.getLogger("pulseboard.hub")

QUEUE_SIZE = 1000
SWEEP_SECONDS = 1.0
PER_EVENT = 1024

T = TypeVar("T")


class Listener:
    """A local subscriber's bounded inbox. None in it means "read the event log": sent when the
    hub knows of events it did not relay, and left in place of everything when the inbox
    overflows, so a slow reader costs a bounded amount of memory and still loses nothing."""

    def __init__(self, size: int, stats: Counter[str]) -> None:
        self._queue: asyncio.Queue[EventMessage | None] = asyncio.Queue(maxsize=size)
        self._stats = stats

    def offer(self, message: EventMessage | None) -> None:
        try:
            self._queue.put_nowait(message)
        except asyncio.QueueFull:
            self._stats["overflows"] += 1
            telemetry.OVERFLOWS.inc()
            while not self._queue.empty():
                self._queue.get_nowait()
            self._queue.put_nowait(None)

    async def get(self) -> EventMessage | None:
        """The next message, or None when messages were dropped (read them from the log)."""
        return await self._queue.get()

    def pending(self) -> int:
        return self._queue.qsize()


@dataclass
class _Topic:
    listeners: set[Listener] = field(default_factory=set)
    task: asyncio.Task[None] | None = None
    # The highest seq this worker knows to be committed on the topic (relayed or swept).
    last_seq: int = 0

    def relay(self, message: EventMessage | None) -> None:
        if message is not None:
            self.last_seq = max(self.last_seq, message.seq)
        for listener in list(self.listeners):
            listener.offer(message)


class Hub:
    def __init__(
        self,
        broadcast: Broadcast,
        *,
        metrics_interval: float,
        sweep_interval: float = SWEEP_SECONDS,
        queue_size: int = QUEUE_SIZE,
        broker_up: Callable[[], bool] = lambda: True,
        namespace: str = "",
    ) -> None:
        self.broadcast = broadcast
        # Prefixed to every broker channel, so deployments sharing a Redis never hear each other.
        self.namespace = namespace
        self._broker_up = broker_up
        self.queue_size = queue_size
        self.sweep_interval = sweep_interval
        self.metrics = MetricsEngine(self.listen, interval=metrics_interval)
        self._sweeper: asyncio.Task[None] | None = None
        # Counts of what the hub had to do: inbox overflows and catch-ups from the log.
        self.stats: Counter[str] = Counter()
        self._per_event: OrderedDict[tuple[str, int], object] = OrderedDict()
        self._topics: dict[str, _Topic] = {}
        # Subscribing and unsubscribing are serialised: broadcaster 0.3.1 races on concurrent
        # first subscribers of a channel (all but one missed messages when we measured it).
        self._lock = asyncio.Lock()

    @property
    def topics(self) -> dict[str, int]:
        """Topics with local listeners, and how many each has."""
        return {name: len(t.listeners) for name, t in self._topics.items()}

    async def publish(self, messages: Sequence[EventMessage]) -> None:
        """Sends committed events to every worker. A failure is logged, never raised: the change
        is committed and the event log still has it."""
        for message in messages:
            try:
                await self.broadcast.publish(self.namespace + message.topic, encode(message))
                telemetry.PUBLISHED.labels(telemetry.topic_kind(message.topic)).inc()
            except Exception:
                telemetry.PUBLISH_FAILURES.inc()
                logger.exception("publish to %s failed (seq %s)", message.topic, message.seq)

    @asynccontextmanager
    async def listen(self, topic: str) -> AsyncIterator[Listener]:
        """A listener on `topic` for the duration of the block; live once the block is entered."""
        listener = Listener(self.queue_size, self.stats)
        async with self._lock:
            entry = self._topics.get(topic)
            if entry is None:
                entry = self._topics[topic] = _Topic()
                try:
                    entry.last_seq = await head(topic)
                    ready = asyncio.Event()
                    entry.task = asyncio.create_task(self._relay(topic, entry, ready))
                    await ready.wait()
                except BaseException:  # cancelled while the topic started: leave nothing behind
                    await self._drop(topic, entry)
                    raise
            entry.listeners.add(listener)
        try:
            yield listener
        finally:
            async with self._lock:
                entry.listeners.discard(listener)
                if not entry.listeners:
                    await self._drop(topic, entry)

    async def _drop(self, topic: str, entry: _Topic) -> None:
        if self._topics.get(topic) is entry:
            del self._topics[topic]
        if entry.task is not None:
            entry.task.cancel()
            await asyncio.gather(entry.task, return_exceptions=True)

    async def _relay(self, topic: str, entry: _Topic, ready: asyncio.Event) -> None:
        try:
            async with self.broadcast.subscribe(self.namespace + topic) as subscriber:
                ready.set()
                async for event in subscriber:  # type: ignore[union-attr]
                    if event is None:
                        break
                    try:
                        message = decode(event.message)
                        if message.topic != topic:
                            raise ValueError(f"a {message.topic} event on {topic}")
                    except ValueError:
                        logger.warning("dropped a malformed message on %s", topic)
                        continue
                    entry.relay(message)
        finally:
            ready.set()

    def start(self) -> None:
        telemetry.HUB_TOPICS.set_function(lambda: len(self._topics))
        self._sweeper = asyncio.create_task(self._sweep_forever())

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval)
            try:
                await self.sweep()
            except Exception:
                logger.exception("sweep failed")

    async def sweep(self) -> None:
        """Tells the listeners of every topic with committed events this worker has not relayed
        (a failed publish, a broker outage) to read them from the log."""
        active = dict(self._topics)
        if not active:
            return
        rows = await TopicCounter.filter(topic__in=list(active)).values_list("topic", "seq")
        for topic, committed in rows:
            entry = active[str(topic)]
            if int(committed) > entry.last_seq:
                logger.info("catching up %s from the log (%s -> %s)", topic, entry.last_seq, committed)
                entry.last_seq = int(committed)
                self.stats["catchups"] += 1
                telemetry.CATCHUPS.inc()
                entry.relay(None)

    @property
    def connected(self) -> bool:
        """Whether the broker connection is up."""
        return self._broker_up()

    def per_event(self, message: EventMessage, make: Callable[[], T]) -> T:
        """One object per event shared by every local subscriber (its loaders: an event's rows are
        read once per worker, not once per subscriber), kept for the latest PER_EVENT events."""
        key = (message.topic, message.seq)
        shared = self._per_event.get(key)
        if shared is None:
            shared = self._per_event[key] = make()
            if len(self._per_event) > PER_EVENT:
                self._per_event.popitem(last=False)
        return shared  # type: ignore[return-value]

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        await self.metrics.close()
        async with self._lock:
            tasks = [t.task for t in self._topics.values() if t.task is not None]
            self._topics.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def head(topic: str) -> int:
    """The last seq committed on `topic` (0 when none)."""
    counter = await TopicCounter.get_or_none(topic=topic)
    return counter.seq if counter else 0


_current: Hub | None = None


def install(hub: Hub | None) -> None:
    """Makes `hub` this process's hub (the app's lifespan does this; one hub per worker)."""
    global _current
    _current = hub


def current() -> Hub | None:
    return _current
