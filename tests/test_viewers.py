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


async def test_viewers_of_requests_arriving_at_once_share_their_statements(settings: Settings) -> None:
    """Sockets (or requests) of many users arriving at once: their users are read, and created,
    in a few statements rather than one or two each, and each still gets its own user. Two
    tokens of one subject with different names, at once, each get the name they carry."""
    async with serving(settings) as api:
        await api.ok(_token(settings, "Sam"), VIEWER)  # a returning user among new ones
        names = [f"User {n}" for n in range(30)]
        tokens = [
            mint_token(
                settings.jwt_secret,
                sub=f"user{n}@example.test",
                email=f"user{n}@example.test",
                name=name,
                role=Role.MEMBER,
                ttl=dt.timedelta(hours=1),
            )
            for n, name in enumerate(names)
        ]
        tokens += [_token(settings, "Samuel"), _token(settings, "Samantha")]
        with count_queries() as statements:
            answers = await asyncio.gather(*(api.ok(token, VIEWER) for token in tokens))
        assert [answer["viewer"]["name"] for answer in answers] == [*names, "Samuel", "Samantha"]
        users = _users_statements(statements)
        assert len(users) <= 6, users  # 32 users: one or two statements each without batching
        stored = {user.sub: user for user in await User.all()}
        assert [stored[f"user{n}@example.test"].name for n in range(30)] == names
        assert stored["sam@example.test"].name in ("Samuel", "Samantha")
        ids = [answer["viewer"]["id"] for answer in answers]
        assert ids[-1] == ids[-2] == str(stored["sam@example.test"].id)
        assert len(set(ids)) == 31
