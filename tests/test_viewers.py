"""The user behind a token: read from a per-worker cache keyed by the token's claims, read from
the database after that, and written only when the claims say something new."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt

from pulseboard.auth import mint_token
from pulseboard.models import Role, User
from pulseboard.settings import Settings
from tests.helpers import count_queries, serving

VIEWER = "{ viewer { id name } }"


def _token(settings: Settings, name: str) -> str:
    return mint_token(
        settings.jwt_secret,
        sub="sam@example.test",
        email="sam@example.test",
        name=name,
        role=Role.MEMBER,
        ttl=dt.timedelta(hours=1),
    )


def _users_statements(statements: list[str]) -> list[str]:
    return [s for s in statements if '"users"' in s or " users " in s]


async def test_a_cached_viewer_costs_no_statement(settings: Settings) -> None:
    async with serving(settings) as api:
        token = _token(settings, "Sam")
        await api.ok(token, VIEWER)
        with count_queries() as statements:
            assert (await api.ok(token, VIEWER))["viewer"]["name"] == "Sam"
        assert _users_statements(statements) == []


async def test_a_returning_user_is_read_not_written(settings: Settings) -> None:
    async with serving(dataclasses.replace(settings, viewer_cache_seconds=0.05)) as api:
        token = _token(settings, "Sam")
        await api.ok(token, VIEWER)
        await asyncio.sleep(0.1)  # past the cache
        with count_queries() as statements:
            await api.ok(token, VIEWER)
        users = _users_statements(statements)
        assert len(users) == 1 and users[0].lstrip().upper().startswith("SELECT"), users


async def test_new_claims_are_written(settings: Settings) -> None:
    async with serving(settings) as api:
        await api.ok(_token(settings, "Sam"), VIEWER)
        with count_queries() as statements:
            renamed = await api.ok(_token(settings, "Samantha"), VIEWER)
        assert renamed["viewer"]["name"] == "Samantha"
        assert any("INSERT" in s.upper() for s in _users_statements(statements))
        assert (await User.get(sub="sam@example.test")).name == "Samantha"
