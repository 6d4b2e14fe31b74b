"""The people directory, users(search) and user(id): how to find someone to assign or invite.

A viewer finds the people they share a project or a team with, and themself; admins find
everyone. Anyone else is NOT_FOUND word for word like an id of nobody (as access.addable_user),
so the directory is neither a list of every account nor an existence oracle.

Search matches the start of a name or of any word in it, ignoring case. E-mail addresses are
private (access.sees_private_fields), so only admins match them by prefix; everyone else only by
the whole address (ignoring case): whoever knows an address may look its owner up to invite
them, but no address can be learnt a letter at a time."""

from __future__ import annotations

from tortoise.expressions import Q, Subquery

from pulseboard.errors import not_found
from pulseboard.models import ProjectMember, TeamMember, User
from pulseboard.resolvers import access
from pulseboard.resolvers.context import Context
from pulseboard.resolvers.pagination import Page, paginate
from pulseboard.resolvers.validation import searched


def visible_users(viewer: User) -> Q:
    """Filter on User: the viewer, and whoever shares a project or a team with them (everyone,
    for admins). Subqueries, so that a page of the directory is one statement."""
    if access.is_admin(viewer):
        return Q()
    projects = ProjectMember.filter(user_id=viewer.id).values("project_id")
    teams = TeamMember.filter(user_id=viewer.id).values("team_id")
    project_mates = ProjectMember.filter(project_id__in=Subquery(projects)).values("user_id")
    team_mates = TeamMember.filter(team_id__in=Subquery(teams)).values("user_id")
    return Q(
        Q(id=viewer.id),
        Q(id__in=Subquery(project_mates)),
        Q(id__in=Subquery(team_mates)),
        join_type=Q.OR,
    )


def matching(viewer: User, words: str) -> Q:
    """Filter on User: the name, or a word of it, starts with `words`; or the e-mail address
    starts with them (admins) or is them (everyone else). Ignoring case; `%` and `_` are taken
    literally."""
    name = Q(name__istartswith=words) | Q(name__icontains=f" {words}")
    email = Q(email__istartswith=words) if access.is_admin(viewer) else Q(email__iexact=words)
    return name | email


async def user(ctx: Context, user_id: object) -> User:
    """The user if the viewer may find them (one query: the row and the visibility together)."""
    viewer = ctx.require_viewer()
    uid = access.parse_id("User", user_id)
    found = await User.filter(visible_users(viewer), id=uid).first()
    if found is None:
        raise not_found("User", user_id)
    return found


async def users(
    ctx: Context,
    *,
    search: str | None,
    first: int | None,
    after: str | None,
    last: int | None = None,
    before: str | None = None,
    with_count: bool = False,
) -> Page[User]:
    """The people the viewer may find, by id: keyset cursors are integer keys, so the order is
    the order people first signed in, not that of names."""
    viewer = ctx.require_viewer()
    query = User.filter(visible_users(viewer))
    if words := searched(search):
        query = query.filter(matching(viewer, words))
    return await paginate(
        query,
        order=["id"],
        first=first,
        after=after,
        last=last,
        before=before,
        settings=ctx.settings,
        with_count=with_count,
    )
