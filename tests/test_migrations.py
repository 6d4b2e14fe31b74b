"""The shipped migrations cover the models, and apply cleanly and idempotently."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest
from tortoise import Tortoise, connections
from tortoise.cli.cli import tortoise_cli_context
from tortoise.migrations.api.migrate import migrate
from tortoise.migrations.autodetector import MigrationAutodetector

import pulseboard.models.migrations
from pulseboard.app import apply_migrations
from pulseboard.models import ProjectMember, Task, Ticket, TopicCounter
from pulseboard.settings import Settings, tortoise_config
from tests.conftest import BASE_DATABASE_URL, ON_POSTGRES, _pg, _with_database

MIGRATIONS = Path(pulseboard.models.migrations.__file__).parent


async def test_models_have_no_changes_without_a_migration() -> None:
    config = tortoise_config("sqlite://:memory:")
    async with tortoise_cli_context(config) as ctx:
        writers = await MigrationAutodetector(ctx.apps, config["apps"]).changes()
    pending = [op.describe() for w in writers for op in w.operations]
    assert pending == [], f"model changes need a migration (make migrations): {pending}"


async def test_migrations_reapply_as_a_no_op(settings: Settings) -> None:
    # The test database is a copy of a freshly migrated one; applying again changes nothing.
    await apply_migrations(settings)
    await Tortoise.init(config=tortoise_config(settings.database_url))
    try:
        conn = connections.get("default")
        _, rows = await conn.execute_query("SELECT app, name FROM tortoise_migrations")
        shipped = sorted(p.stem for p in MIGRATIONS.glob("[0-9]*.py"))
        assert sorted(r["name"] for r in rows if r["app"] == "models") == shipped
        assert await Task.all().count() == 0
        assert await Ticket.all().count() == 0
        assert await TopicCounter.all().count() == 0
    finally:
        await Tortoise.close_connections()


@pytest.mark.skipif(not ON_POSTGRES, reason="workers migrating together is a PostgreSQL matter")
async def test_processes_starting_together_migrate_one_at_a_time(tmp_path: Path) -> None:
    """Workers (or hosts) started at once on an empty database each apply the migrations:
    without a lock two of them created the same table or index and one failed to start."""
    name = f"test_race_{uuid.uuid4().hex[:12]}"
    url = _with_database(BASE_DATABASE_URL, name)
    await _pg(f'CREATE DATABASE "{name}"')
    try:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("PULSEBOARD_")}
        starting = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "pulseboard",
                "migrate",
                cwd=tmp_path,
                env={**environ, "PULSEBOARD_DATABASE_URL": url},
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            for _ in range(3)
        ]
        outputs = [(await process.communicate())[0].decode() for process in starting]
        assert [process.returncode for process in starting] == [0, 0, 0], outputs
        conn = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1))
        try:
            names = [
                r["name"]
                for r in await conn.fetch("SELECT name FROM tortoise_migrations WHERE app = 'models'")
            ]
        finally:
            await conn.close()
        assert sorted(names) == sorted(p.stem for p in MIGRATIONS.glob("[0-9]*.py"))
    finally:
        await _pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@asynccontextmanager
async def empty_database(tmp_path: Path) -> AsyncIterator[str]:
    """The URL of a database with nothing in it, on the backend under test."""
    if not ON_POSTGRES:
        yield f"sqlite://{tmp_path / 'empty.sqlite3'}"
        return
    name = f"test_empty_{uuid.uuid4().hex[:12]}"
    await _pg(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(BASE_DATABASE_URL, name)
    finally:
        await _pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_a_database_with_rows_from_the_first_migration_on_migrates(
    settings: Settings, tmp_path: Path
) -> None:
    # Columns added later to tables that had rows: project roles (0003: the creator owns the
    # project), urgency (0006: the key lists order by priority on).
    async with empty_database(tmp_path) as url:
        config = tortoise_config(url)
        try:
            await migrate(config=config, app_labels=["models"], target="models.0001_initial")
            await connections.get("default").execute_script(
                "INSERT INTO users (id, sub, email, name, role, created_at) VALUES"
                " (1, 'a', 'a@example.test', 'A', 'MEMBER', CURRENT_TIMESTAMP),"
                " (2, 'b', 'b@example.test', 'B', 'MEMBER', CURRENT_TIMESTAMP);"
                "INSERT INTO projects (id, name, description, created_by_id, created_at)"
                " VALUES (1, 'P', '', 1, CURRENT_TIMESTAMP);"
                "INSERT INTO project_members (project_id, user_id, created_at)"
                " VALUES (1, 1, CURRENT_TIMESTAMP), (1, 2, CURRENT_TIMESTAMP);"
                + "".join(
                    "INSERT INTO tasks (id, project_id, title, description, status, position, priority,"
                    " progress, created_by_id, created_at, updated_at, version) VALUES"
                    f" ({i}, 1, 'T', '', 1, {i}, '{p}', 0, 1, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 1);"
                    for i, p in enumerate(["LOW", "MEDIUM", "HIGH", "URGENT"], start=1)
                )
            )
        finally:
            await Tortoise.close_connections()
        await apply_migrations(dataclasses.replace(settings, database_url=url))
        await Tortoise.init(config=config)
        try:
            roles = await ProjectMember.all().order_by("user_id").values_list("user_id", "role")
            assert [(u, str(r)) for u, r in roles] == [(1, "OWNER"), (2, "MEMBER")]
            tasks = await Task.all().order_by("urgency").values_list("priority", "urgency")
            assert [(str(p), u) for p, u in tasks] == [("URGENT", 0), ("HIGH", 1), ("MEDIUM", 2), ("LOW", 3)]
        finally:
            await Tortoise.close_connections()
