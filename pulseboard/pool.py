"""Tortoise's asyncpg backend with a bounded wait for a pooled connection (the `engine` that
settings.tortoise_config names for PostgreSQL).

Tortoise acquires from its pool without a timeout: with every connection held by slow queries,
a request would wait for as long as they run. Here a request that gets no connection within
`acquire_timeout` seconds fails with PoolTimeout, a DBConnectionError: retryable, nothing was
done."""

from __future__ import annotations

from typing import Any

import asyncpg
from tortoise.backends.asyncpg.client import AsyncpgDBClient
from tortoise.exceptions import DBConnectionError


class PoolTimeout(DBConnectionError):
    """No database connection was free (or could be opened) within the acquire timeout."""


class BoundedPool(asyncpg.Pool):  # type: ignore[misc]
    acquire_timeout: float | None = None

    async def _acquire(self, timeout: float | None) -> Any:  # noqa: ASYNC109 (asyncpg's signature)
        # Every acquire (Tortoise's queries and transactions, `async with pool.acquire()`) comes
        # through here; an explicit timeout still wins.
        timeout = self.acquire_timeout if timeout is None else timeout
        try:
            return await super()._acquire(timeout)
        except TimeoutError:
            raise PoolTimeout(f"no database connection free within {timeout:g} s") from None


class BoundedAsyncpgClient(AsyncpgDBClient):
    def __init__(self, *args: Any, acquire_timeout: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.acquire_timeout = None if acquire_timeout is None else float(acquire_timeout)

    async def create_pool(self, **kwargs: Any) -> asyncpg.Pool:
        # What asyncpg.create_pool does, with our pool class.
        pool = BoundedPool(
            None,
            min_size=kwargs.pop("min_size", 10),
            max_size=kwargs.pop("max_size", 10),
            max_queries=kwargs.pop("max_queries", 50000),
            max_inactive_connection_lifetime=kwargs.pop("max_inactive_connection_lifetime", 300.0),
            connect=kwargs.pop("connect", None),
            setup=kwargs.pop("setup", None),
            init=kwargs.pop("init", None),
            reset=kwargs.pop("reset", None),
            loop=kwargs.pop("loop", None),
            connection_class=kwargs.pop("connection_class", asyncpg.connection.Connection),
            record_class=kwargs.pop("record_class", asyncpg.protocol.Record),
            **kwargs,
        )
        pool.acquire_timeout = self.acquire_timeout
        return await pool


client_class = BoundedAsyncpgClient
