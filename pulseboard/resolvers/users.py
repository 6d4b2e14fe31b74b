"""Users from JWT claims (upserted on first sight), teams and their members."""

from __future__ import annotations

import time
from collections import OrderedDict

from tortoise.exceptions import IntegrityError

from pulseboard.auth import Claims
from pulseboard.errors import bad_input, not_found
from pulseboard.models import Role, Team, TeamMember, User
from pulseboard.resolvers.access import parse_id, require_admin
from pulseboard.resolvers.context import Context
from pulseboard.resolvers.validation import text


async def upsert_from_claims(claims: Claims) -> User:
    """The user behind a token, created on first sight and kept in step with its claims."""
    user = await User.get_or_none(sub=claims.sub)
    if user is None:
        try:
            return await User.create(sub=claims.sub, email=claims.email, name=claims.name, role=claims.role)
        except IntegrityError:  # a concurrent first request created it
            user = await User.get(sub=claims.sub)
    if (user.email, user.name, user.role) != (claims.email, claims.name, claims.role):
        user.email, user.name, user.role = claims.email, claims.name, claims.role
        await user.save(update_fields=["email", "name", "role"])
    return user


class Viewers:
    """The user behind each token's claims, remembered for `ttl` seconds per worker: a request
    whose claims are unchanged reads and writes nothing. Bounded; least recently used go first."""

    def __init__(self, ttl: float, size: int = 10_000) -> None:
        self.ttl = ttl
        self.size = size
        self._users: OrderedDict[tuple[str, str, str, Role], tuple[User, float]] = OrderedDict()
        self.upserts = 0  # how often the database was asked, for tests and metrics

    async def get(self, claims: Claims) -> User:
        key = (claims.sub, claims.email, claims.name, claims.role)
        now = time.monotonic()
        cached = self._users.get(key)
        if cached is not None and now - cached[1] < self.ttl:
            self._users.move_to_end(key)
            return cached[0]
        self.upserts += 1
        user = await upsert_from_claims(claims)
        self._users[key] = (user, now)
        self._users.move_to_end(key)
        while len(self._users) > self.size:
            self._users.popitem(last=False)
        return user


async def user_by_id(ctx: Context, user_id: object) -> User:
    ctx.require_viewer()
    user = await ctx.loaders.user.load(parse_id("User", user_id))
    if user is None:
        raise not_found("User", user_id)
    return user


async def create_team(ctx: Context, *, name: str) -> Team:
    require_admin(ctx.require_viewer())
    name = text("name", name, max_length=200)
    if await Team.exists(name=name):
        raise bad_input("name", f"A team named {name!r} exists already.")
    return await Team.create(name=name)


async def add_team_member(ctx: Context, *, team_id: object, user_id: object) -> Team:
    require_admin(ctx.require_viewer())
    team = await Team.get_or_none(id=parse_id("Team", team_id))
    if team is None:
        raise not_found("Team", team_id)
    user = await user_by_id(ctx, user_id)
    await TeamMember.get_or_create(team_id=team.id, user_id=user.id)
    return team


async def team_members(team: Team) -> list[User]:
    return await User.filter(team_memberships__team_id=team.id).order_by("id")
