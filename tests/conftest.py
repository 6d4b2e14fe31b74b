"""Each test gets a fresh database and the real app (lifespan included) behind an HTTP client.

The backend comes from PULSEBOARD_TEST_DATABASE_URL (unset: a SQLite file per test) and
PULSEBOARD_TEST_BROADCAST_URL (unset: memory://). A migrated template database is made once per
run and copied for each test, so every test starts clean without paying for migrations each time.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from pulseboard.app import apply_migrations
from pulseboard.settings import Settings
from tests.helpers import Api, serving
from tests.live import LiveServer, serve
from tests.services import private_postgres, private_redis  # noqa: F401

BASE_DATABASE_URL = os.environ.get("PULSEBOARD_TEST_DATABASE_URL", "")
BROADCAST_URL = os.environ.get("PULSEBOARD_TEST_BROADCAST_URL", "memory://")
ON_POSTGRES = BASE_DATABASE_URL.startswith("postgres")
JWT_SECRET = "test-secret-" + "x" * 40


def _with_database(url: str, name: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + name


async def _pg(sql: str) -> None:
    conn = await asyncpg.connect(BASE_DATABASE_URL.replace("postgres://", "postgresql://", 1))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def template_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database with every migration applied, made once per test run."""
    if ON_POSTGRES:
        name = f"test_template_{uuid.uuid4().hex[:12]}"
        asyncio.run(_pg(f'CREATE DATABASE "{name}"'))
        asyncio.run(apply_migrations(Settings(database_url=_with_database(BASE_DATABASE_URL, name))))
        yield name
        asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    else:
        path = tmp_path_factory.mktemp("template") / "template.db"
        asyncio.run(apply_migrations(Settings(database_url=f"sqlite://{path}")))
        yield str(path)


@pytest.fixture
async def database_url(template_database: str, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh copy of the template for this test, dropped afterwards."""
    if ON_POSTGRES:
        name = f"test_{uuid.uuid4().hex[:16]}"
        await _pg(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
        yield _with_database(BASE_DATABASE_URL, name)
        await _pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    else:
        path = tmp_path / "test.db"
        shutil.copyfile(template_database, path)
        yield f"sqlite://{path}"


@pytest.fixture
def settings(database_url: str) -> Settings:
    # Tests drive bursts of mutations as one user, and some keep the event loop busy on purpose;
    # the rate limit and overload shedding have tests of their own.
    return Settings(
        database_url=database_url,
        broadcast_url=BROADCAST_URL,
        jwt_secret=JWT_SECRET,
        mutations_per_second=10_000,
        mutation_burst=10_000,
        overload_lag_ms=0,
    )


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    """The real app, lifespan and all, driven over HTTP through its ASGI interface."""
    async with serving(settings) as api:
        yield api


@pytest.fixture
async def live(settings: Settings) -> AsyncIterator[LiveServer]:
    """The app served by uvicorn on a real loopback socket, in this process."""
    async with serve(settings) as server:
        yield server
