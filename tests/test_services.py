"""The private services of tests/services.py behave as the fault tests rely on, and leave nothing."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests import services
from tests.services import PostgresCluster, RedisServer

# Bound by assignment: a `from ... import` of a fixture makes ruff flag every test taking it (F811).
private_postgres = services.private_postgres
private_redis = services.private_redis


def _dsn(url: str) -> str:
    return url.replace("postgres://", "postgresql://", 1)


async def test_private_postgres_keeps_data_across_a_restart_and_leaves_nothing(
    private_postgres: PostgresCluster,
) -> None:
    cluster = private_postgres
    assert cluster.port not in (5432, 6379)
    url = cluster.create_database("kept")
    conn = await asyncpg.connect(_dsn(url))
    try:
        await conn.execute("CREATE TABLE t (v text)")
        await conn.execute("INSERT INTO t VALUES ('before the stop')")
    finally:
        await conn.close()

    cluster.stop()
    assert not cluster.running
    with pytest.raises(OSError):  # refused outright, not left hanging
        await asyncpg.connect(_dsn(url), timeout=5)

    cluster.start()
    conn = await asyncpg.connect(_dsn(url))
    try:
        assert await conn.fetchval("SELECT v FROM t") == "before the stop"
    finally:
        await conn.close()

    cluster.remove()
    assert not cluster.exists()
    assert cluster.name not in PostgresCluster.listed_names()


async def test_private_postgres_pause_hangs_queries_until_resumed(private_postgres: PostgresCluster) -> None:
    conn = await asyncpg.connect(_dsn(private_postgres.url()))
    try:
        private_postgres.pause()
        query = asyncio.ensure_future(conn.fetchval("SELECT 41 + 1"))
        await asyncio.sleep(0.5)
        assert not query.done()  # hangs: the connection is open but no one answers
        private_postgres.resume()
        assert await asyncio.wait_for(query, 10) == 42
    finally:
        await conn.close()


def test_private_postgres_is_dropped_when_the_block_fails() -> None:
    with pytest.raises(RuntimeError), PostgresCluster() as cluster:
        name = cluster.name
        cluster.pause()  # even a paused cluster must be removable
        raise RuntimeError("the test failed")
    assert name not in PostgresCluster.listed_names()


def test_private_redis_pause_resume_and_restart(private_redis: RedisServer) -> None:
    assert private_redis.port != 6379
    # No retries: redis-py's default would retry the timed-out ping with seconds of backoff.
    client = redis.Redis(
        host="127.0.0.1", port=private_redis.port, socket_timeout=0.5, retry=Retry(NoBackoff(), 0)
    )
    try:
        client.set("k", "v")
        private_redis.pause()
        with pytest.raises(redis.TimeoutError):  # hangs rather than refusing
            client.ping()
        private_redis.resume()
        assert client.get("k") == b"v"  # the same server, data intact
        private_redis.restart()
        assert client.get("k") is None  # same port, fresh server: nothing persisted
    finally:
        client.close()
