"""A socket's outbox: a bounded queue of ready frames and the one task that writes them.

Cohorts put frames here without waiting, so a slow socket never delays another; a subscriber
whose frame does not fit goes to catch-up and waits for room (`wait_for_room`)."""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections import deque
from collections.abc import Awaitable, Callable

from pulseboard import telemetry

FRAMES = 1000
# Every open outbox of this worker, for the depth gauge.
OPEN: weakref.WeakSet[Outbox] = weakref.WeakSet()
telemetry.OUTBOX_FRAMES.set_function(lambda: sum(len(outbox) for outbox in OPEN))


class Outbox:
    def __init__(self, send: Callable[[str], Awaitable[None]], size: int = FRAMES) -> None:
        self._send = send
        self.size = size
        self._frames: deque[str] = deque()
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._writer: asyncio.Task[None] | None = None
        self.closed = False
        OPEN.add(self)

    def __len__(self) -> int:
        return len(self._frames)

    def offer(self, frame: str) -> bool:
        """Queue `frame` unless the outbox is full (or closed); whether it was queued."""
        if self.closed or len(self._frames) >= self.size:
            return False
        self._frames.append(frame)
        if len(self._frames) >= self.size:
            self._room.clear()
        self._ready.set()
        if self._writer is None:
            self._writer = asyncio.create_task(self._write())
        return True

    async def put(self, frame: str) -> None:
        """Queue `frame`, waiting for room first (catch-up and final messages use this)."""
        while not self.offer(frame):
            if self.closed:
                return
            await self.wait_for_room()

    async def wait_for_room(self) -> None:
        await self._room.wait()

    async def _write(self) -> None:
        try:
            while not self.closed:
                await self._ready.wait()
                while self._frames:
                    frame = self._frames.popleft()
                    if len(self._frames) < self.size // 2:
                        self._room.set()
                    await self._send(frame)
                self._ready.clear()
        except Exception:  # the socket went away: nothing more can be written to it
            self.close()

    def close(self) -> None:
        """Drop what is queued; later frames are refused. Waiters for room are released."""
        self.closed = True
        self._frames.clear()
        self._room.set()
        self._ready.set()

    async def aclose(self) -> None:
        self.close()
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._writer
