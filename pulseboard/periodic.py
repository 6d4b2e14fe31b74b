"""A worker's background job that runs one step every so often until the app stops: the e-mail
sender, the reminder sweeper. A step that fails (the database is down, say) is logged once when
failures begin and once when they end; what it had to do waits in its rows meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
import logging

logger = logging.getLogger("pulseboard")


class Periodic:
    name = "job"  # for the log lines and the asyncio task's name

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._task: asyncio.Task[None] | None = None
        self._closed = asyncio.Event()
        self._failing = False

    async def step(self) -> object:
        raise NotImplementedError

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"pulseboard-{self.name}")

    async def close(self, grace: float | None = None) -> None:
        """Lets the step under way finish, for `grace` seconds at most (then cancels it)."""
        self._closed.set()
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._task, grace)

    async def _run(self) -> None:
        while not self._closed.is_set():
            try:
                await self.step()
            except Exception as error:
                if not self._failing:
                    logger.warning("%s paused: %s: %s", self.name, type(error).__name__, error)
                self._failing = True
            else:
                if self._failing:
                    logger.warning("%s resumed", self.name)
                self._failing = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closed.wait(), self.interval)
