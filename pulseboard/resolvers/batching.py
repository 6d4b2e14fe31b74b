"""Reads batched across every caller of one event-loop tick in a worker, and never cached.

Hundreds of sockets connecting at once each read their user at `connection_init` and authorize
their subscription at `subscribe`: through a Batched read they share one statement per tick
instead of making one each. Each caller waits on a future of its own (Strawberry's DataLoader
with cache=False), so one that is cancelled cancels nothing of another's.

The batch runs in the first caller's context. Call these reads only outside a transaction:
inside one, Tortoise would run the whole batch on that transaction's connection."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from strawberry.dataloader import DataLoader

K = TypeVar("K")
T = TypeVar("T")


class Batched(Generic[K, T]):
    """load(key) → one call of `load_fn(keys)` for all the keys asked for in the same tick."""

    def __init__(self, load_fn: Callable[[list[K]], Awaitable[Sequence[T]]]) -> None:
        self._load_fn = load_fn
        self._loader: DataLoader[K, T] | None = None
        self.batches = 0  # load_fn calls, for tests and benchmarks

    def load(self, key: K) -> Awaitable[T]:
        loop = asyncio.get_running_loop()
        if self._loader is None or self._loader.loop is not loop:  # one loader per event loop
            self._loader = DataLoader(load_fn=self._batch, cache=False, loop=loop)
        return self._loader.load(key)

    async def _batch(self, keys: list[K]) -> Sequence[T]:
        self.batches += 1
        return await self._load_fn(keys)
