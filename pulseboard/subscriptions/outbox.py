"""A socket's outbox: a bounded queue of ready frames and the one writer that sends them.

Cohorts offer frames without waiting, so a slow socket never delays another; a subscriber whose
frame does not fit goes to catch-up and waits for room (`wait_for_room`).

The writer costs nothing while the socket keeps up. An idle outbox sends an offered frame at
once, running the ASGI send up to its first suspension (uvicorn's send suspends only while the
socket's write buffer is above its high-water mark); only a send that has to wait, and the
frames queued behind it, get a writer task, which ends when the queue is empty. This is what
Python 3.12's eager tasks do, by hand: no task switch per frame on the common path."""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

from pulseboard import telemetry

FRAMES = 1000
# Every open outbox of this worker, for the depth gauge.
OPEN: weakref.WeakSet[Outbox] = weakref.WeakSet()
telemetry.OUTBOX_FRAMES.set_function(lambda: sum(len(outbox) for outbox in OPEN))


class Outbox:
    def __init__(self, send: Callable[[str], Coroutine[Any, Any, None]], size: int = FRAMES) -> None:
        self._send = send
        self.size = size
        self._frames: deque[str] = deque()
        self._room = asyncio.Event()
        self._room.set()
        self._writer: asyncio.Task[None] | None = None
        self.closed = False
        OPEN.add(self)

    def __len__(self) -> int:
        return len(self._frames)

    def offer(self, frame: str) -> bool:
        """Send or queue `frame` unless the outbox is full (or closed); whether it was taken."""
        if self.closed or len(self._frames) >= self.size:
            return False
        if self._writer is None:
            self._send_now(frame)
            return True
        self._frames.append(frame)
        if len(self._frames) >= self.size:
            self._room.clear()
        return True

    async def put(self, frame: str) -> None:
        """Queue `frame`, waiting for room first (catch-up and final messages use this)."""
        while not self.offer(frame):
            if self.closed:
                return
            await self.wait_for_room()

    async def wait_for_room(self) -> None:
        await self._room.wait()

    def _send_now(self, frame: str) -> None:
        send = self._send(frame)
        try:
            waiting = send.send(None)
        except StopIteration:
            return  # sent
        except Exception:  # the socket went away
            self.close()
            return
        self._writer = asyncio.create_task(self._write(send, waiting))

    async def _write(self, send: Coroutine[Any, Any, None], waiting: Any) -> None:
        """Finishes a send that had to wait, then sends what queued behind it."""
        try:
            await _finish(send, waiting)
            while self._frames and not self.closed:
                frame = self._frames.popleft()
                if len(self._frames) < self.size // 2:
                    self._room.set()
                await self._send(frame)
        except Exception:  # the socket went away: nothing more can be written to it
            self.close()
        finally:
            self._writer = None
            self._room.set()

    def close(self) -> None:
        """Drop what is queued; later frames are refused. Waiters for room are released."""
        self.closed = True
        self._frames.clear()
        self._room.set()

    async def aclose(self) -> None:
        self.close()
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._writer


async def _finish(send: Coroutine[Any, Any, None], waiting: Any) -> None:
    """Drives a coroutine that suspended on `waiting` to its end, as its task would have: wait
    until what it yielded is done (a future; None is a bare yield), then resume it, which reads
    the future's result itself."""
    try:
        while True:
            if waiting is None:
                await asyncio.sleep(0)
            elif not waiting.done():
                await asyncio.wait({waiting})
            try:
                waiting = send.send(None)
            except StopIteration:
                return
    except asyncio.CancelledError:
        send.close()
        raise
