"""Users from JWT claims (upserted on first sight), teams and their members."""

from __future__ import annotations

import time
from collections import OrderedDict

from tortoise import connections, timezone

from pulseboard.auth import Claims
from pulseboard.errors import bad_input, not_found
from pulseboard.models import Role, Team, TeamMember, User
from pulseboard.resolvers.access import parse_id, require_admin
from pulseboard.resolvers.context import Context
from pulseboard.resolvers.validation import text

# One statement, one round trip: the user is created on first sight, updated when the claims
# changed, and returned either way (no row when nothing changed: then it is read). The leading
# comment keeps Tortoise's asyncpg client from dropping the rows of a statement starting INSERT.
_UPSERT = (
    "/* upsert */ INSERT INTO users (sub, email, name, role, created_at) VALUES ({params}) "
    "ON CONFLICT (sub) DO UPDATE SET email = excluded.email, name = excluded.name, role = excluded.role "
    "WHERE users.email <> excluded.email OR users.name <> excluded.name OR users.role <> excluded.role "
    "RETURNING id, sub, email, name, role, created_at"
)


async def upsert_from_claims(claims: Claims) -> User:
    """The user behind a token, created on first sight and kept in step with its claims."""
    db = connections.get("default")
    params = ", ".join(f"${n}" if db.capabilities.dialect == "postgres" else "?" for n in range(1, 6))
    values = [claims.sub, claims.email, claims.name, claims.role.value, timezone.now()]
    rows = await db.executor_class(model=User, db=db).execute_select(_UPSERT.format(params=params), values)
    return rows[0] if rows else await User.get(sub=claims.sub)


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
