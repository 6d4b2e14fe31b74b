"""What the commands log at the default level: lines an operator can act on, not the ORM's chatter."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import run_cli


def _seeded(tmp_path: Path, **env: str) -> str:
    """The stderr of `seed` (which migrates, then opens and closes its connections) on a new file."""
    database = f"sqlite://{tmp_path / 'db.sqlite3'}"
    result = run_cli("seed", cwd=tmp_path, PULSEBOARD_DATABASE_URL=database, **env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "seeded demo data"
    return result.stderr


def test_the_orm_opening_and_closing_its_connections_is_not_logged_at_info(tmp_path: Path) -> None:
    assert "Tortoise-ORM" not in _seeded(tmp_path)


def test_at_debug_the_orm_logs_again(tmp_path: Path) -> None:
    logged = _seeded(tmp_path, PULSEBOARD_LOG_LEVEL="DEBUG")
    assert "Tortoise-ORM shutdown" in logged
