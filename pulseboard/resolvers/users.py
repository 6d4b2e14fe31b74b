"""Users from JWT claims (upserted on first sight), their roles, teams and their members.

Where a role comes from is settings.role_source. `token`: the identity provider's `role` claim,
and the newest token wins: claims are written only from a token whose `iat` is not older than
users.claims_issued_at (a token without `iat` counts as older than any that has one), so a stale
admin token never restores a demoted user; the request runs with the stored role. `server`: the
claim is ignored, new users are MEMBERs, and roles change only through set_user_role (the
setUserRole mutation) or the `pulseboard role` command. Every role change commits an access notice
(subscriptions/access.py): each worker forgets the user's cached viewer and closes their sockets."""

from __future__ import annotations

import datetime as dt
import functools
import time
from collections import OrderedDict
from typing import Any

from tortoise import connections, timezone
from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q

from pulseboard.auth import Claims
from pulseboard.errors import AppError, ErrorCode, bad_input, not_found
from pulseboard.models import Role, Team, TeamMember, User
from pulseboard.resolvers.access import parse_id, require_admin
from pulseboard.resolvers.batching import Batched
from pulseboard.resolvers.context import Context
from pulseboard.resolvers.events import Transaction, transaction
from pulseboard.resolvers.validation import text
from pulseboard.settings import Settings
from pulseboard.subscriptions import access, topics
from pulseboard.subscriptions.encoding import from_row

# One statement, one round trip, for all the users of a batch: a user is created on first sight,
# updated when the claims changed (or a newer token said the same), and returned either way (no
# row when nothing was written: then it is read). Only a token at least as new as the stored
# claims writes; a role change is left to _take_role_from_token, which commits it with its access
# notice. The leading comment keeps Tortoise's asyncpg client from dropping the rows of a
# statement starting INSERT.
_FRESH = "(users.claims_issued_at IS NULL OR excluded.claims_issued_at >= users.claims_issued_at)"
_NEWER = (
    "(excluded.claims_issued_at > users.claims_issued_at"
    " OR (users.claims_issued_at IS NULL AND excluded.claims_issued_at IS NOT NULL))"
)
_UPSERT = (
    "/* upsert */ INSERT INTO users (sub, email, name, role, claims_issued_at, created_at) VALUES {rows} "
    "ON CONFLICT (sub) DO UPDATE SET email = excluded.email, name = excluded.name, "
    "claims_issued_at = excluded.claims_issued_at "
    f"WHERE {_FRESH}{{same_role}} "
    f"AND (users.email <> excluded.email OR users.name <> excluded.name OR {_NEWER}) "
    "RETURNING id, sub, email, name, role, claims_issued_at, created_at"
)
_UPSERTS = {
    "token": _UPSERT.replace("{same_role}", " AND users.role = excluded.role"),
    "server": _UPSERT.replace("{same_role}", ""),
}


def _fresh(issued_at: dt.datetime | None, stored: dt.datetime | None) -> bool:
    """Whether claims issued at `issued_at` may overwrite claims stored from a token of `stored`."""
    return stored is None or (issued_at is not None and issued_at >= stored)


def _fresh_filter(issued_at: dt.datetime | None) -> Q:
    stored_unknown = Q(claims_issued_at__isnull=True)
    return stored_unknown if issued_at is None else stored_unknown | Q(claims_issued_at__lte=issued_at)


def _changed(user: User, claims: Claims) -> bool:
    """Whether the upsert could write `claims` over the stored user (the last condition of its
    WHERE): another email or name, or a newer token. A returning user with the same token, the
    usual case, is one read and no write (and no row lock)."""
    stored, issued = user.claims_issued_at, claims.issued_at
    newer = issued is not None and (stored is None or issued > stored)
    return user.email != claims.email or user.name != claims.name or newer


async def upsert_from_claims(claims: Claims, *, role_source: str = "token") -> User:
    """The user behind a token, created on first sight and kept in step with its newest claims:
    read, and written only when the claims say something new. With role_source "server" the
    role claim is ignored (new users are MEMBERs). Batched with the users of other sockets and
    requests arriving at once (resolvers/batching: never inside a transaction)."""
    user = await _by_sub.load(claims.sub)
    if user is None or _changed(user, claims):  # else the upsert would write nothing: skip it
        user = await _writes[role_source].load(claims) or await User.get(sub=claims.sub)
    newer = _fresh(claims.issued_at, user.claims_issued_at)
    if role_source == "token" and user.role != claims.role and newer:
        user = await _take_role_from_token(user, claims)
    return user


async def _users_by_sub(subs: list[str]) -> list[User | None]:
    found = {user.sub: user for user in await User.filter(sub__in=list(set(subs)))}
    return [found.get(sub) for sub in subs]


async def _write_claims(role_source: str, claims: list[Claims]) -> list[User | None]:
    """The upsert of several claims, as few statements as there are claims of one subject (an
    upsert may change a row only once); per claims, the user written, or None where nothing was."""
    db = connections.get("default")
    postgres = db.capabilities.dialect == "postgres"
    written: dict[Claims, User] = {}
    pending = list(dict.fromkeys(claims))
    while pending:
        rows: dict[str, Claims] = {}
        for one in pending:
            rows.setdefault(one.sub, one)
        values: list[Any] = []
        for one in rows.values():
            role = one.role if role_source == "token" else Role.MEMBER
            values += [one.sub, one.email, one.name, role.value, one.issued_at, timezone.now()]
        marks = [f"${n}" if postgres else "?" for n in range(1, len(values) + 1)]
        tuples = ", ".join("(" + ", ".join(marks[at : at + 6]) + ")" for at in range(0, len(marks), 6))
        sql = _UPSERTS[role_source].format(rows=tuples)
        for user in await db.executor_class(model=User, db=db).execute_select(sql, values):
            written[rows[user.sub]] = user
        pending = [one for one in pending if rows[one.sub] is not one]
    return [written.get(one) for one in claims]


# Users are read and written through these: those of sockets connecting at once, in one
# statement each (resolvers/batching).
_by_sub: Batched[str, User | None] = Batched(_users_by_sub)
_writes = {source: Batched(functools.partial(_write_claims, source)) for source in _UPSERTS}


async def _take_role_from_token(user: User, claims: Claims) -> User:
    """A token at least as new as the stored claims names another role: write its claims and
    the access notice together. Of concurrent requests (other workers) exactly one writes."""
    async with transaction(None) as tx:
        changed = (
            await User.filter(_fresh_filter(claims.issued_at), id=user.id)
            .exclude(role=claims.role)
            .using_db(tx.conn)
            .update(role=claims.role, email=claims.email, name=claims.name, claims_issued_at=claims.issued_at)
        )
        if changed:
            _notice(tx, user.id, claims.role)
    await access.notify(from_row(event) for event in tx.events)
    return await User.get(id=user.id)


def _notice(tx: Transaction, user_id: int, role: Role) -> None:
    tx.emit(topics.access(), access.ROLE_CHANGED, {"userId": user_id, "role": role.value})


def require_server_roles(settings: Settings) -> None:
    """Roles are changed here only when the server keeps them: with role_source "token" the
    identity provider is the authority, and its next token would undo the change."""
    if settings.role_source != "server":
        raise AppError(
            ErrorCode.FORBIDDEN,
            "Roles come from the identity provider's tokens here: change the role there"
            " (or run the server with PULSEBOARD_ROLE_SOURCE=server).",
        )


async def change_role(user_id: int, role: Role, *, actor: User | None) -> tuple[User, Role]:
    """Sets a user's role and commits its access notice; returns the user and their previous
    role. An actor (the setUserRole mutation) may not remove the last administrator; without
    one (the operator's `pulseboard role` command) nothing is refused."""
    async with transaction(actor.id if actor else None) as tx:
        if actor is not None and role != Role.ADMIN:
            # Locked, so two admins demoting each other at once cannot leave none (rows, not
            # values_list(): Tortoise drops FOR UPDATE from the latter).
            admins = await User.filter(role=Role.ADMIN).select_for_update().using_db(tx.conn)
            if [admin.id for admin in admins] == [user_id]:
                raise bad_input(
                    "role", f"User {user_id} is the last administrator: make another user ADMIN first."
                )
        user = await User.filter(id=user_id).select_for_update().using_db(tx.conn).first()
        if user is None:
            raise not_found("User", user_id)
        previous = user.role
        if previous != role:
            await User.filter(id=user_id).using_db(tx.conn).update(role=role)
            user.role = role
            _notice(tx, user_id, role)
    await access.notify(from_row(event) for event in tx.events)
    return user, previous


async def set_user_role(ctx: Context, *, user_id: object, role: Role) -> User:
    """setUserRole: admins only, and only when the server keeps roles (role_source "server")."""
    viewer = ctx.require_viewer()
    require_admin(viewer)
    require_server_roles(ctx.settings)
    user, _ = await change_role(parse_id("User", user_id), role, actor=viewer)
    return user


async def user_by_login(*, email: str | None = None, sub: str | None = None) -> User:
    """The one user with this subject, or with this email (BAD_USER_INPUT when several share it)."""
    if sub is not None:
        user = await User.get_or_none(sub=sub)
        if user is None:
            raise not_found("User", sub)
        return user
    found = await User.filter(email=email).limit(2)
    if not found:
        raise not_found("User", email)
    if len(found) > 1:
        raise bad_input("email", f"Several users have the email {email!r}: name one by --sub.")
    return found[0]


_Key = tuple[str, str, str, Role, dt.datetime | None]


class Viewers:
    """The user behind each token's claims, remembered for `ttl` seconds per worker: a request
    whose claims are unchanged reads and writes nothing. Bounded; least recently used go first.
    forget() drops a user at once (their role changed: an access notice)."""

    def __init__(self, ttl: float, size: int = 10_000, *, role_source: str = "token") -> None:
        self.ttl = ttl
        self.size = size
        self.role_source = role_source
        # Per token, `iat` included: a newer token is read once, even when it says the same.
        self._users: OrderedDict[_Key, tuple[User, float]] = OrderedDict()
        self.upserts = 0  # how often the database was asked, for tests and metrics
        self._forgotten = 0  # how many forget() calls so far

    async def get(self, claims: Claims) -> User:
        key = (claims.sub, claims.email, claims.name, claims.role, claims.issued_at)
        now = time.monotonic()
        cached = self._users.get(key)
        if cached is not None and now - cached[1] < self.ttl:
            self._users.move_to_end(key)
            return cached[0]
        for _ in range(3):
            forgotten = self._forgotten
            self.upserts += 1
            user = await upsert_from_claims(claims, role_source=self.role_source)
            if forgotten == self._forgotten:
                break
            # A role changed while the user was read: what was read may predate it.
        else:
            return user  # roles keep changing: not remembered
        self._users[key] = (user, now)
        self._users.move_to_end(key)
        while len(self._users) > self.size:
            self._users.popitem(last=False)
        return user

    def forget(self, user_id: int) -> None:
        """Drops every remembered claims of `user_id`: their next request reads the user anew."""
        self._forgotten += 1
        for key in [key for key, (user, _) in self._users.items() if user.id == user_id]:
            del self._users[key]


async def user_by_id(ctx: Context, user_id: object) -> User:
    ctx.require_viewer()
    user = await ctx.loaders.user.load(parse_id("User", user_id))
    if user is None:
        raise not_found("User", user_id)
    return user


async def create_team(ctx: Context, *, name: str) -> Team:
    require_admin(ctx.require_viewer())
    name = text("name", name, max_length=200)
    taken = bad_input("name", f"A team named {name!r} exists already.")
    if await Team.exists(name=name):
        raise taken
    try:
        return await Team.create(name=name)
    except IntegrityError:  # created meanwhile by a concurrent request: the same answer
        if await Team.exists(name=name):
            raise taken from None
        raise


async def add_team_member(ctx: Context, *, team_id: object, user_id: object) -> Team:
    require_admin(ctx.require_viewer())
    team = await Team.get_or_none(id=parse_id("Team", team_id))
    if team is None:
        raise not_found("Team", team_id)
    user = await user_by_id(ctx, user_id)
    # A concurrent add of the same member is no error: get_or_create reads the row it lost to.
    try:
        await TeamMember.get_or_create(team_id=team.id, user_id=user.id)
    except IntegrityError:  # the team (or user) was deleted meanwhile
        if not await Team.exists(id=team.id):
            raise not_found("Team", team_id) from None
        raise
    return team


async def team_members(team: Team) -> list[User]:
    return await User.filter(team_memberships__team_id=team.id).order_by("id")
