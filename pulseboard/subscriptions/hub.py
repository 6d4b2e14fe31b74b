"""The per-worker hub: one broadcaster subscription per topic with local listeners, each message
decoded once and handed to every local listener through a bounded queue."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TypeVar

from broadcaster import Broadcast

from pulseboard import telemetry
from pulseboard.models import TopicCounter
from pulseboard.subscriptions.encoding import EventMessage, decode, encode
from pulseboard.subscriptions.metrics import MetricsEngine
from pulseboard.subscriptions.presence import PresenceTable

logger = logging.getLogger("pulseboard.hub")

QUEUE_SIZE = 1000
SWEEP_SECONDS = 1.0
PER_EVENT = 1024
PUBLISH_TIMEOUT = 1.0
PUBLISH_QUEUE = 10_000
# While the broker is down, one publish is tried per this many seconds; events committed between
# tries are not published at all (the sweep reads them from the log).
PUBLISH_RETRY_SECONDS = 0.5
# A failure that recurs (a publish, a sweep) is logged in full once per this many seconds.
REPEAT_LOG_SECONDS = 10.0

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


class BrokerState:
    """Whether the broker answers, as the last publish or readiness PING found; logs each change
    once ("broker down", "broker back after 9.8 s") and repeats of a failure rate-limited."""

    def __init__(self) -> None:
        self.down_since: float | None = None
        self.failures = 0

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def failed(self, what: str, error: BaseException) -> None:
        self.failures += 1
        reason = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        if self.down_since is None:
            self.down_since = time.monotonic()
            logger.warning(
                "broker down (%s: %s); subscribers get events from the event log until it is back",
                what,
                reason,
            )
        else:
            telemetry.log_limited(
                logger,
                "broker still down",
                "broker still down (%s: %s)",
                what,
                reason,
                interval=REPEAT_LOG_SECONDS,
            )

    def answered(self) -> None:
        if self.down_since is not None:
            logger.warning(
                "broker back after %.1f s (%d failed calls meanwhile)",
                time.monotonic() - self.down_since,
                self.failures,
            )
            self.down_since, self.failures = None, 0


class Hub:
    def __init__(
        self,
        broadcast: Broadcast,
        *,
        metrics_interval: float,
        sweep_interval: float = SWEEP_SECONDS,
        queue_size: int = QUEUE_SIZE,
        broker_up: Callable[[], bool] = lambda: True,
        broker_ping: Callable[[], Awaitable[object]] | None = None,
        publish_timeout: float = PUBLISH_TIMEOUT,
        publish_queue_size: int = PUBLISH_QUEUE,
        namespace: str = "",
    ) -> None:
        self.broadcast = broadcast
        # Prefixed to every broker channel, so deployments sharing a Redis never hear each other.
        self.namespace = namespace
        self._broker_up = broker_up
        self._broker_ping = broker_ping
        self.broker = BrokerState()
        # Events waiting to be published, in commit order; drained by one task (start()), so a
        # slow or hung broker never holds a mutation's answer.
        self.publish_timeout = publish_timeout
        self._outgoing: asyncio.Queue[EventMessage] = asyncio.Queue(maxsize=publish_queue_size)
        self._publisher: asyncio.Task[None] | None = None
        self._retry_at = 0.0
        self.queue_size = queue_size
        self.sweep_interval = sweep_interval
        self.metrics = MetricsEngine(self.listen, interval=metrics_interval)
        # Started by the first presence subscription or setPresence (resolvers/presence.py).
        self.presence: PresenceTable | None = None
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
        """Queues committed events for every worker and returns at once (a started hub); they
        are sent in commit order by the publisher task. Nothing is raised: the change is
        committed and the event log has it, so an event that is never published (the broker
        timed out or is down, the queue is full) reaches subscribers through the sweep, which
        finds committed seqs that this worker never relayed, or through the gap the next
        published seq shows."""
        if self._publisher is None:  # a hub that is not serving (the CLI): publish right here
            for message in messages:
                await self._publish_one(message)
            return
        for message in messages:
            try:
                self._outgoing.put_nowait(message)
            except asyncio.QueueFull:
                self._not_published(1)
                telemetry.log_limited(
                    logger,
                    "publish queue full",
                    "publish queue full (%d events): dropped %s seq %s; subscribers read it from the log",
                    self._outgoing.maxsize,
                    message.topic,
                    message.seq,
                    interval=REPEAT_LOG_SECONDS,
                )

    async def _publish_forever(self) -> None:
        while True:
            message = await self._outgoing.get()
            try:
                if self.broker.down and time.monotonic() < self._retry_at:
                    self._not_published(1)  # tried again at _retry_at; the sweep has it meanwhile
                elif not await self._publish_one(message):
                    self._retry_at = time.monotonic() + PUBLISH_RETRY_SECONDS
            finally:
                self._outgoing.task_done()

    async def _publish_one(self, message: EventMessage) -> bool:
        try:
            async with asyncio.timeout(self.publish_timeout):
                await self.broadcast.publish(self.namespace + message.topic, encode(message))
        except Exception as error:
            self._not_published(1)
            self.broker.failed(f"publish to {message.topic} seq {message.seq}", error)
            return False
        telemetry.PUBLISHED.labels(telemetry.topic_kind(message.topic)).inc()
        self.broker.answered()
        return True

    def _not_published(self, count: int) -> None:
        self.stats["unpublished"] += count
        telemetry.PUBLISH_FAILURES.inc(count)

    @property
    def publish_backlog(self) -> int:
        """Events queued for the broker and not yet sent."""
        return self._outgoing.qsize()

    async def broker_answers(self) -> bool:
        """Whether the broker is connected and answers a PING within the publish timeout."""
        if not self._broker_up():
            return False
        if self._broker_ping is None:
            return True
        try:
            async with asyncio.timeout(self.publish_timeout):
                await self._broker_ping()
        except Exception as error:
            self.broker.failed("PING", error)
            return False
        self.broker.answered()
        return True

    @asynccontextmanager
    async def listen(self, topic: str) -> AsyncIterator[Listener]:
        """A listener on `topic` for the duration of the block; live once the block is entered."""
        listener = Listener(self.queue_size, self.stats)
        async with self._lock:
            entry = self._topics.get(topic)
            if entry is None:
                # The head is read before the sweep can see the topic: it would take a new
                # topic's last_seq of 0 for events missed ("catching up ... (0 -> N)").
                entry = _Topic(last_seq=await head(topic))
                self._topics[topic] = entry
                try:
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
        self._publisher = asyncio.create_task(self._publish_forever())

    async def _sweep_forever(self) -> None:
        failing_since: float | None = None
        while True:
            await asyncio.sleep(self.sweep_interval)
            telemetry.BROKER_UP.set(1 if self._broker_up() else 0)
            telemetry.PUBLISH_QUEUE.set(self._outgoing.qsize())
            try:
                await self.sweep()
            except Exception as error:
                if failing_since is None:  # the first failure with its traceback, then rate-limited
                    failing_since = time.monotonic()
                    logger.exception("sweep failed; retrying every %s s", self.sweep_interval)
                else:
                    telemetry.log_limited(
                        logger,
                        "sweep still failing",
                        "sweep still failing after %.0f s (%s: %s)",
                        time.monotonic() - failing_since,
                        type(error).__name__,
                        error,
                        interval=REPEAT_LOG_SECONDS,
                    )
            else:
                if failing_since is not None:
                    logger.warning("sweep back after %.1f s", time.monotonic() - failing_since)
                    failing_since = None

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
                # Every topic, every second, while the broker is down: one line per interval.
                telemetry.log_limited(
                    logger,
                    "catching up",
                    "catching up %s from the log (%s -> %s)",
                    topic,
                    entry.last_seq,
                    committed,
                    interval=REPEAT_LOG_SECONDS,
                )
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
        if self.presence is not None:  # first: its leaving goes out while the broker is there
            await self.presence.close()
        if self._publisher is not None:
            # What is queued gets one publish timeout to go out; the rest other workers' sweeps find.
            if not self.broker.down:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.publish_timeout):
                        await self._outgoing.join()
            self._publisher.cancel()
            await asyncio.gather(self._publisher, return_exceptions=True)
            self._publisher = None
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
