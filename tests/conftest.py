"""Each test gets a fresh database and the real app (lifespan included) behind an HTTP client.

The backend comes from PULSEBOARD_TEST_DATABASE_URL (unset: a SQLite file per test) and
PULSEBOARD_TEST_BROADCAST_URL (unset: memory://). A migrated template database is made once per
run and copied for each test, so every test starts clean without paying for migrations each time.
On PostgreSQL the copies are made one test ahead and dropped behind, by threads of their own.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from pulseboard.app import apply_migrations
from pulseboard.settings import Settings
from tests.helpers import Api, serving
from tests.live import LiveServer, serve
from tests.services import (  # noqa: F401 (the fixtures, for every test)
    module_postgres,
    postgres_template,
    private_postgres,
    private_redis,
    process_gone,
)

BASE_DATABASE_URL = os.environ.get("PULSEBOARD_TEST_DATABASE_URL", "")
BROADCAST_URL = os.environ.get("PULSEBOARD_TEST_BROADCAST_URL", "memory://")
ON_POSTGRES = BASE_DATABASE_URL.startswith("postgres")
JWT_SECRET = "test-secret-" + "x" * 40
# The PostgreSQL databases of a run are named test_<pid of its pytest>_...: those of a run killed
# before its teardown (its template, and the used copies still waiting for their drop) are
# recognised and dropped by the next run on the machine.
RUN_PREFIX = f"test_{os.getpid()}_"


def _with_database(url: str, name: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + name


async def _pg(sql: str) -> None:
    conn = await asyncpg.connect(BASE_DATABASE_URL.replace("postgres://", "postgresql://", 1))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _drop_orphaned_databases() -> None:
    """Drop the test_<pid>_ databases of runs whose pytest is gone, if the server is on this
    machine (the pids of another's runs mean nothing here)."""
    if urlsplit(BASE_DATABASE_URL).hostname not in ("127.0.0.1", "::1", "localhost"):
        return
    conn = await asyncpg.connect(BASE_DATABASE_URL.replace("postgres://", "postgresql://", 1))
    try:
        for row in await conn.fetch("SELECT datname FROM pg_database WHERE datname ~ '^test_[0-9]+_'"):
            if process_gone(int(row["datname"].split("_")[1])):
                await conn.execute(f'DROP DATABASE IF EXISTS "{row["datname"]}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def template_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database with every migration applied, made once per test run."""
    if ON_POSTGRES:
        asyncio.run(_drop_orphaned_databases())
        name = f"{RUN_PREFIX}template_{uuid.uuid4().hex[:12]}"
        asyncio.run(_pg(f'CREATE DATABASE "{name}"'))
        asyncio.run(apply_migrations(Settings(database_url=_with_database(BASE_DATABASE_URL, name))))
        yield name
        asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    else:
        path = tmp_path_factory.mktemp("template") / "template.db"
        asyncio.run(apply_migrations(Settings(database_url=f"sqlite://{path}")))
        yield str(path)


class Copies:
    """The tests' copies of the template on PostgreSQL, made and dropped by threads of their own.

    CREATE DATABASE writes the whole template (some 8 MB) to the WAL and DROP DATABASE forces a
    checkpoint: tenths of a second each on a busy disk, which no test has to wait for. The copy a
    test gets was made while the test before it ran, and it is dropped while the next ones run.
    Drops have a thread apart so that a slow checkpoint never holds up the next copy."""

    # Used copies waiting to be dropped, at most (some 8 MB of disk each); past it, a test's
    # teardown waits for the oldest.
    BACKLOG = 20

    def __init__(self, template: str) -> None:
        self.template = template
        self._maker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-database-copies")
        self._dropper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-database-drops")
        self._dropping: deque[Future[None]] = deque()
        self._next = self._maker.submit(self._create)

    def _create(self) -> str:
        name = f"{RUN_PREFIX}{uuid.uuid4().hex[:16]}"
        asyncio.run(_pg(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"'))
        return name

    @staticmethod
    def _drop(name: str) -> None:
        asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def take(self) -> str:
        """A fresh copy that no test has used; the one for the next test is started meanwhile."""
        name = self._next.result()
        self._next = self._maker.submit(self._create)
        return name

    def drop(self, name: str) -> None:
        """Dropped in the background (with its connections, if any are left)."""
        self._dropping.append(self._dropper.submit(self._drop, name))
        while self._dropping and (self._dropping[0].done() or len(self._dropping) > self.BACKLOG):
            self._dropping.popleft().result()  # a drop that failed fails the teardown at hand

    def close(self) -> None:
        """Drop the copy made for no test, and wait for every drop."""
        try:
            self.drop(self._next.result())
        finally:
            self._maker.shutdown()
            self._dropper.shutdown()
        while self._dropping:
            self._dropping.popleft().result()


@pytest.fixture(scope="session")
def copies(template_database: str) -> Iterator[Copies | None]:
    """The maker of the tests' PostgreSQL databases (None on SQLite, where a copy is a file's)."""
    if not ON_POSTGRES:
        yield None
        return
    made = Copies(template_database)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def database_url(template_database: str, copies: Copies | None, tmp_path: Path) -> Iterator[str]:
    """A fresh copy of the template for this test, dropped afterwards."""
    if copies is not None:
        name = copies.take()
        yield _with_database(BASE_DATABASE_URL, name)
        copies.drop(name)
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
