"""The shipped migrations cover the models, and apply cleanly and idempotently."""

from __future__ import annotations

from pathlib import Path

from tortoise import Tortoise, connections
from tortoise.cli.cli import tortoise_cli_context
from tortoise.migrations.autodetector import MigrationAutodetector

import pulseboard.models.migrations
from pulseboard.app import apply_migrations
from pulseboard.models import Task, Ticket, TopicCounter
from pulseboard.settings import Settings, tortoise_config

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
