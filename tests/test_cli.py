"""The command line as an operator runs it: real subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jwt
import pytest

from pulseboard.schema import schema
from tests.helpers import run_cli


def test_token_mints_a_verifiable_dev_token(tmp_path: Path) -> None:
    secret = "s" * 40
    result = run_cli(
        "token", "--email", "kim@example.test", "--role", "AGENT", cwd=tmp_path, PULSEBOARD_JWT_SECRET=secret
    )
    assert result.returncode == 0, result.stderr
    claims = jwt.decode(result.stdout.strip(), secret, algorithms=["HS256"])
    assert (claims["sub"], claims["email"], claims["role"]) == (
        "kim@example.test",
        "kim@example.test",
        "AGENT",
    )


@pytest.mark.parametrize("days", ["0", "-1", "-0.5", "nan", "inf"])
def test_token_refuses_days_that_are_not_a_positive_lifetime(tmp_path: Path, days: str) -> None:
    result = run_cli("token", "--email", "kim@example.test", f"--days={days}", cwd=tmp_path)
    assert result.returncode == 2, result
    assert result.stdout == ""
    assert "argument --days: must be more than 0" in result.stderr
    assert result.stderr.startswith("usage: pulseboard token")
    assert list(tmp_path.iterdir()) == []  # refused before any setting was read (no secret made)


def test_token_refuses_days_that_are_not_a_number(tmp_path: Path) -> None:
    result = run_cli("token", "--email", "kim@example.test", "--days", "a week", cwd=tmp_path)
    assert result.returncode == 2
    assert "argument --days: not a number of days: 'a week'" in result.stderr


def test_token_lives_the_days_asked(tmp_path: Path) -> None:
    secret = "s" * 40
    result = run_cli(
        "token", "--email", "kim@example.test", "--days", "0.5", cwd=tmp_path, PULSEBOARD_JWT_SECRET=secret
    )
    assert result.returncode == 0, result.stderr
    claims = jwt.decode(result.stdout.strip(), secret, algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] == 12 * 3600


def test_development_secret_is_generated_once_and_kept(tmp_path: Path) -> None:
    first = run_cli("token", "--email", "a@example.test", cwd=tmp_path)
    second = run_cli("token", "--email", "a@example.test", cwd=tmp_path)
    secret = (tmp_path / ".pulseboard-secret").read_text().strip()
    assert len(secret) >= 32
    for result in (first, second):
        jwt.decode(result.stdout.strip(), secret, algorithms=["HS256"])
    assert "generated a development secret" in first.stderr
    assert "generated" not in second.stderr


def test_export_schema_prints_the_sdl(tmp_path: Path) -> None:
    result = run_cli("export-schema", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout == schema.as_str() + "\n"


def test_serve_refuses_several_workers_on_sqlite_or_memory(tmp_path: Path) -> None:
    result = run_cli("serve", "--workers", "2", cwd=tmp_path, PULSEBOARD_JWT_SECRET="s" * 40)
    assert result.returncode != 0
    assert "needs a server database" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = run_cli(
        "serve",
        "--workers",
        "2",
        cwd=tmp_path,
        PULSEBOARD_JWT_SECRET="s" * 40,
        PULSEBOARD_DATABASE_URL="postgres://x@127.0.0.1/none",
    )
    assert result.returncode != 0
    assert "needs a shared broadcast backend" in result.stderr


def test_production_refuses_a_placeholder_secret(tmp_path: Path) -> None:
    result = run_cli("migrate", cwd=tmp_path, PULSEBOARD_ENV="production", PULSEBOARD_JWT_SECRET="changeme")
    assert result.returncode != 0
    assert "PULSEBOARD_JWT_SECRET" in result.stderr


def test_migrate_and_seed_once(tmp_path: Path) -> None:
    env = {"PULSEBOARD_JWT_SECRET": "s" * 40, "PULSEBOARD_DATABASE_URL": f"sqlite://{tmp_path}/cli.db"}
    assert run_cli("migrate", cwd=tmp_path, **env).returncode == 0
    first = run_cli("seed", cwd=tmp_path, **env)
    second = run_cli("seed", cwd=tmp_path, **env)
    assert first.stdout.strip() == "seeded demo data", first.stderr
    assert second.stdout.strip() == "demo data exists already", second.stderr


def test_a_serving_worker_tunes_the_garbage_collector(tmp_path: Path) -> None:
    """uvicorn's factory (what every worker runs) freezes the startup objects and raises the
    collector's thresholds; building an app elsewhere (tests, scripts) leaves CPython's own."""
    probe = (
        "import gc; from pulseboard.app import GC_THRESHOLDS, app_from_env, create_app;"
        "from pulseboard.settings import from_env;"
        "create_app(from_env()); before = (gc.get_threshold(), gc.get_freeze_count());"
        "app_from_env(); after = (gc.get_threshold(), gc.get_freeze_count());"
        "print(before[0] != GC_THRESHOLDS, before[1] == 0, after[0] == GC_THRESHOLDS, after[1] > 1000)"
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PULSEBOARD_")}
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True"] * 4
