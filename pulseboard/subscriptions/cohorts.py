"""Cohorts: the subscriptions of a worker that would be sent the same bytes for an event (same
topic, document, operation, variables and scope). A cohort reads its topic once, in seq order
without gap, executes and serialises each event once, and pushes the frame into every member's
outbox. A member that falls behind (a full outbox, a gap, a resume cursor) catches up on its own,
from the cohort's recent events or the log, sharing the cohort's rendered payloads, then rejoins
the live push. Nothing a member does can cancel or fail what the others wait on: renders run in
tasks of the cohort's own, awaited through shields."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Hashable
from typing import TypeVar

from tortoise import timezone

from pulseboard import telemetry
from pulseboard.errors import AppError
from pulseboard.subscriptions import streams
from pulseboard.subscriptions.encoding import EventMessage
from pulseboard.subscriptions.hub import Hub, head
from pulseboard.subscriptions.outbox import Outbox

logger = logging.getLogger("pulseboard.cohorts")

# Rendered payloads and events each cohort keeps for members that catch up.
RECENT = 256
# Events a cohort reads ahead of the one it is sending, their renders already running: a render
# that waits for the database then holds up the events behind it by its own wait only.
READ_AHEAD = 16
BACKOFF_FIRST, BACKOFF_MAX = 0.05, 2.0

T = TypeVar("T")
Render = Callable[[EventMessage], Awaitable[str]]
Admit = Callable[[EventMessage], bool]


class Unavailable(Exception):
    """The database (or broker) did not answer within the delivery bound: the client should
    reconnect and resume with its cursor."""


class Retry:
    """Backoff while something keeps failing, up to `bound` seconds since the first failure of a
    run of failures (a success ends the run)."""

    def __init__(self, bound: float, stats: Counter[str], what: str) -> None:
        self.bound, self.stats, self.what = bound, stats, what
        self._since: float | None = None
        self._delay = BACKOFF_FIRST

    def succeeded(self) -> None:
        if self._since is not None:
            logger.info("%s recovered after %.1f s", self.what, time.monotonic() - self._since)
        self._since, self._delay = None, BACKOFF_FIRST

    async def failed(self, error: Exception) -> None:
        now = time.monotonic()
        if self._since is None:
            self._since = now
            logger.warning("%s failed, retrying: %s: %s", self.what, type(error).__name__, error)
        if now - self._since >= self.bound:
            raise Unavailable(f"{self.what} failed for {self.bound:.0f} s") from error
        self.stats["retries"] += 1
        telemetry.DELIVERY_RETRIES.inc()
        await asyncio.sleep(self._delay)
        self._delay = min(self._delay * 2, BACKOFF_MAX)

    async def call(self, attempt: Callable[[], Awaitable[T]]) -> T:
        while True:
            try:
                result = await attempt()
            except (AppError, Unavailable, asyncio.CancelledError):
                raise
            except Exception as error:
                await self.failed(error)
            else:
                self.succeeded()
                return result


class Member:
    """One subscription in a cohort, delivering into its socket's outbox."""

    def __init__(
        self, cohort: Cohort, id: str, outbox: Outbox, admit: Admit, gated: frozenset[str], last: int
    ) -> None:
        self.cohort = cohort
        self.outbox = outbox
        self.admit = admit
        self.gated = gated  # the event types `admit` decides; every other one is for everyone
        self.prefix = '{"id":' + json.dumps(id) + ',"type":"next","payload":'
        self.last = last  # the last seq delivered to (or skipped for) this member
        self.live = False
        self.finished: asyncio.Future[AppError | Unavailable | None] = (
            asyncio.get_running_loop().create_future()
        )
        self._catching_up: asyncio.Task[None] | None = None

    def wants(self, message: EventMessage) -> bool:
        """Whether this live member should be sent `message` (and it is next in line)."""
        if not self.live or message.seq <= self.last:
            return False
        if message.seq > self.last + 1:
            self.catch_up()
            return False
        admitted = self._admits(message)
        if not admitted:
            self.last = message.seq
        return admitted

    def _admits(self, message: EventMessage) -> bool:
        """Whether `message` is for this subscriber; an AppError from `admit` ends it (False)."""
        if message.type not in self.gated:
            return True  # no call per subscriber for the events that concern everyone
        try:
            return self.admit(message)
        except AppError as error:
            self.end(error)
            return False

    def send(self, seq: int, payload: str) -> bool:
        """Hands the frame to the outbox; whether it was taken."""
        if not self.live or self.last != seq - 1:
            return False  # it went to catch-up meanwhile, which will send this one
        if self.outbox.offer(self.prefix + payload + "}"):
            self.last = seq
            return True
        self.cohort.stats["overflows"] += 1
        telemetry.OUTBOX_OVERFLOWS.inc()
        self.catch_up()
        return False

    def catch_up(self) -> None:
        self.live = False
        if self._catching_up is None or self._catching_up.done():
            self.cohort.stats["catchups"] += 1
            telemetry.SUBSCRIBER_CATCHUPS.inc()
            self._catching_up = asyncio.create_task(self._catch_up())

    async def _catch_up(self) -> None:
        try:
            while not self.finished.done():
                await self.outbox.wait_for_room()
                if self.outbox.closed:  # the socket is gone
                    self.end()
                    return
                if self.last >= self.cohort.position:
                    self.live = True  # no await since the check: the live push takes over
                    return
                async for message in self.cohort.since(self.last, self.cohort.position):
                    admitted = self._admits(message)
                    if self.finished.done():
                        return
                    if admitted:
                        payload = await self.cohort.payload(message)
                        await self.outbox.put(self.prefix + payload + "}")
                        self.cohort.delivered.inc()
                    self.last = message.seq
        except Unavailable as error:
            self.end(error)

    def end(self, outcome: AppError | Unavailable | None = None) -> None:
        self.live = False
        if not self.finished.done():
            self.finished.set_result(outcome)

    def close(self) -> None:
        self.end()
        if self._catching_up is not None:
            self._catching_up.cancel()


class Cohort:
    def __init__(
        self,
        key: Hashable,
        topic: str,
        render: Render,
        *,
        hub: Hub,
        retry_seconds: float,
        stats: Counter[str],
    ) -> None:
        self.key = key
        self.topic = topic
        self.render = render
        self.hub = hub
        self.retry_seconds = retry_seconds
        self.members: set[Member] = set()
        self.joining = 0  # subscribers waiting for it to start
        self.position = 0  # the last seq this cohort has taken from its topic
        self.stats = stats
        self.delivered = telemetry.DELIVERED.labels(telemetry.topic_kind(topic))
        self._recent: OrderedDict[int, EventMessage] = OrderedDict()
        self._payloads: OrderedDict[int, str] = OrderedDict()
        self._rendering: dict[int, asyncio.Task[str]] = {}
        self._started = asyncio.Event()
        self._failed: Unavailable | None = None
        self._task = asyncio.create_task(self._run())

    async def ready(self) -> None:
        """Until the cohort listens on its topic and knows its position."""
        await self._started.wait()
        if self._failed is not None:
            raise self._failed

    def join(self, id: str, outbox: Outbox, admit: Admit, gated: frozenset[str], after: int | None) -> Member:
        member = Member(self, id, outbox, admit, gated, self.position if after is None else after)
        self.members.add(member)
        telemetry.COHORT_MEMBERS.inc()
        if member.last >= self.position:
            member.live = True
        else:
            member.catch_up()
        return member

    def leave(self, member: Member) -> bool:
        """Removes `member`; whether the cohort is now empty."""
        if member in self.members:
            self.members.discard(member)
            telemetry.COHORT_MEMBERS.dec()
        member.close()
        return not self.members

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        for task in list(self._rendering.values()):
            task.cancel()

    async def _run(self) -> None:
        retry = Retry(self.retry_seconds, self.stats, f"delivery on {self.topic}")
        try:
            self.position = await retry.call(lambda: head(self.topic))
            self._started.set()
            while True:
                try:
                    stream = streams.events(self.hub, self.topic, self.position)
                    async with contextlib.aclosing(self._ahead(stream)) as ahead:
                        async for message in ahead:
                            await self._dispatch(message)
                            retry.succeeded()
                except (asyncio.CancelledError, Unavailable):
                    raise
                except Exception as error:
                    await retry.failed(error)
        except Unavailable as error:
            self._fail(error)

    async def _ahead(self, stream: AsyncIterator[EventMessage]) -> AsyncGenerator[EventMessage, None]:
        """`stream`'s events in order, read up to READ_AHEAD ahead by a task of their own that
        starts each one's render as it arrives (when the cohort's members are sent that type)."""
        queue: asyncio.Queue[EventMessage | BaseException] = asyncio.Queue(READ_AHEAD)

        async def read() -> None:
            try:
                async for message in stream:
                    member = next(iter(self.members), None)
                    wanted = member is not None and message.type not in member.gated
                    if wanted and message.seq not in self._payloads:
                        self._rendering_of(message)
                    await queue.put(message)
            except Exception as error:  # handed to the reader, which retries as before
                await queue.put(error)

        reader = asyncio.create_task(read())
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    def _fail(self, error: Unavailable) -> None:
        self._failed = error
        self._started.set()
        for member in list(self.members):
            member.end(error)

    async def _dispatch(self, message: EventMessage) -> None:
        self._remember(message)
        self.position = message.seq
        wanting = [member for member in list(self.members) if member.wants(message)]
        if wanting:
            payload = await self.payload(message)
            self.delivered.inc(sum(member.send(message.seq, payload) for member in wanting))
            telemetry.DELIVERY_LATENCY.observe((timezone.now() - message.created_at).total_seconds())

    def _remember(self, message: EventMessage) -> None:
        self._recent[message.seq] = message
        while len(self._recent) > RECENT:
            self._recent.popitem(last=False)

    async def payload(self, message: EventMessage) -> str:
        """The event's `next` payload for this cohort, rendered once however many ask."""
        done = self._payloads.get(message.seq)
        if done is not None:
            return done
        return await asyncio.shield(self._rendering_of(message))

    def _rendering_of(self, message: EventMessage) -> asyncio.Task[str]:
        task = self._rendering.get(message.seq)
        if task is None:
            task = self._rendering[message.seq] = asyncio.create_task(self._render(message))
            task.add_done_callback(functools.partial(self._rendered, message.seq))
        return task

    async def _render(self, message: EventMessage) -> str:
        retry = Retry(self.retry_seconds, self.stats, f"rendering {self.topic}#{message.seq}")
        self.stats["renders"] += 1

        async def attempt() -> str:
            return await self.render(message)

        return await retry.call(attempt)

    def _rendered(self, seq: int, task: asyncio.Task[str]) -> None:
        self._rendering.pop(seq, None)
        if not task.cancelled() and task.exception() is None:
            self._payloads[seq] = task.result()
            while len(self._payloads) > RECENT:
                self._payloads.popitem(last=False)

    async def since(self, after: int, upto: int) -> AsyncIterator[EventMessage]:
        """The topic's events after `after` up to `upto`: from the recent ones when they reach
        back far enough, else from the log (retried within the delivery bound)."""
        if self._recent and next(iter(self._recent)) <= after + 1:
            for seq in range(after + 1, upto + 1):
                message = self._recent.get(seq)
                if message is None:
                    break  # evicted while we read: the rest comes from the log next round
                yield message
            return
        retry = Retry(self.retry_seconds, self.stats, f"catch-up on {self.topic}")
        while after < upto:
            try:
                async for message in streams.replay(self.topic, after, upto):
                    yield message
                    after = message.seq
                retry.succeeded()
                return
            except (asyncio.CancelledError, Unavailable):
                raise
            except Exception as error:
                await retry.failed(error)


class Cohorts:
    """This worker's cohorts by key; a cohort lives while it has members."""

    def __init__(self, hub: Hub, *, retry_seconds: float) -> None:
        self.hub = hub
        self.retry_seconds = retry_seconds
        # What the cohorts had to do: renders, overflows, catch-ups, retries.
        self.stats: Counter[str] = Counter()
        self._cohorts: dict[Hashable, Cohort] = {}
        telemetry.COHORTS.set_function(lambda: len(self._cohorts))

    def __len__(self) -> int:
        return len(self._cohorts)

    @property
    def members(self) -> int:
        return sum(len(c.members) for c in self._cohorts.values())

    async def join(
        self,
        key: Hashable,
        topic: str,
        render: Render,
        *,
        id: str,
        outbox: Outbox,
        admit: Admit,
        gated: frozenset[str],
        after: int | None,
    ) -> Member:
        cohort = self._cohorts.get(key)
        if cohort is None:
            cohort = self._cohorts[key] = Cohort(
                key, topic, render, hub=self.hub, retry_seconds=self.retry_seconds, stats=self.stats
            )
        cohort.joining += 1
        try:
            await cohort.ready()
        except BaseException:  # it failed, or this subscriber left while it started
            cohort.joining -= 1
            if not cohort.members and not cohort.joining and self._cohorts.get(key) is cohort:
                del self._cohorts[key]
                await cohort.close()
            raise
        cohort.joining -= 1
        return cohort.join(id, outbox, admit, gated, after)

    async def leave(self, member: Member) -> None:
        cohort = member.cohort
        if cohort.leave(member) and not cohort.joining and self._cohorts.get(cohort.key) is cohort:
            del self._cohorts[cohort.key]
            await cohort.close()

    async def close(self) -> None:
        cohorts = list(self._cohorts.values())
        self._cohorts.clear()
        await asyncio.gather(*(c.close() for c in cohorts), return_exceptions=True)
