"""schema.graphql at the repo root is the SDL the code serves."""

from __future__ import annotations

from pathlib import Path

from pulseboard.schema import schema

SDL_FILE = Path(__file__).parent.parent / "schema.graphql"


def test_schema_graphql_is_up_to_date() -> None:
    assert SDL_FILE.read_text() == schema.as_str() + "\n", "schema.graphql is stale: run `make schema`"


async def test_served_schema_matches_the_file(api) -> None:  # type: ignore[no-untyped-def]
    data = await api.ok(None, "{ __schema { types { name } } }")
    served = {t["name"] for t in data["__schema"]["types"] if not t["name"].startswith("__")}
    for name in ("Task", "Ticket", "QueueMetrics", "NotificationPreferences", "TaskConnection"):
        assert name in served
        assert f"type {name} " in SDL_FILE.read_text()
