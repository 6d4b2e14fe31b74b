"""Reads and writes batched across the callers of a tick, or of a short window, never cached.

Hundreds of sockets connecting at once each read (or create) their user at `connection_init` and
authorize their subscription at `subscribe`: through a Batched load they share one statement per
batch instead of making one each. An idle worker's load goes at the next tick. In a burst (the
last batch went less than 10 ms ago) loads collect for 10 ms: the sockets' messages arrive spread
over milliseconds, so batching per tick, as Strawberry's DataLoader does, held two or three
sockets a batch. In bench/delivery.py --idle, collecting made 2 000 sockets connect in 2.0 s
instead of 3.1 s, at 0.85 ms of server CPU each instead of 1.35 ms (fewer statements for the
server to build and for PostgreSQL to run, on the same cores).
Each caller waits on a future of its own: one that is cancelled cancels nothing of another's.

A batch runs in the context of one of its callers (the first, or the one that filled it). Use
these loads only outside a transaction: inside one, Tortoise would run the whole batch on that
transaction's connection."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K")
T = TypeVar("T")

WINDOW_SECONDS = 0.01
# Keys of one call at most (a statement's parameters are bounded: SQLite allows 32 766).
MAX_SIZE = 500


class Batched(Generic[K, T]):
    """load(key) → one call of `load_fn(keys)` for all the keys asked for in the same tick, or,
    within `window` s of the last call, in the next `window` s (at most `max_size` keys a call);
    a failure of that call is every caller's."""

    def __init__(
        self,
        load_fn: Callable[[list[K]], Awaitable[Sequence[T]]],
        window: float = WINDOW_SECONDS,
        max_size: int = MAX_SIZE,
    ) -> None:
        self._load_fn = load_fn
        self.window = window
        self.max_size = max_size
        self._timer: asyncio.TimerHandle | None = None
        self._pending: list[tuple[K, asyncio.Future[T]]] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # of the pending batch
        self._dispatched = -math.inf  # when the last batch went (loop time)
        self._running: set[asyncio.Task[None]] = set()
        self.batches = 0  # load_fn calls, for tests and benchmarks

    def load(self, key: K) -> Awaitable[T]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if self._pending is None or self._loop is not loop:  # (a batch of a closed loop is dropped)
            self._pending, self._loop = [], loop
            # Idle, the first load goes at the next tick; within a window of the last batch (a
            # burst), loads collect for the window.
            busy = loop.time() - self._dispatched < self.window
            self._timer = loop.call_later(self.window if busy else 0, self._dispatch)
        self._pending.append((key, future))
        if len(self._pending) >= self.max_size:
            self._dispatch()
        return future

    def _dispatch(self) -> None:
        if self._loop is not asyncio.get_running_loop():
            return  # a window of another loop's batch; that batch was dropped
        if self._timer is not None:
            self._timer.cancel()
        batch = [(key, future) for key, future in self._pending or () if not future.cancelled()]
        self._pending, self._timer = None, None
        self._dispatched = asyncio.get_running_loop().time()
        if batch:
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, batch: list[tuple[K, asyncio.Future[T]]]) -> None:
        self.batches += 1
        try:
            values = await self._load_fn([key for key, _ in batch])
            if len(values) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} keys loaded {len(values)} values")
        except BaseException as error:  # cancelled too (shutdown): no caller waits forever
            for _, future in batch:
                if future.done():
                    continue
                if isinstance(error, Exception):
                    future.set_exception(error)
                else:
                    future.cancel()
            if not isinstance(error, Exception):
                raise
            return
        for (_, future), value in zip(batch, values, strict=True):
            if not future.done():
                future.set_result(value)
