"""Projects and their members.

Roles: owners (and admins) add members, remove others and change roles; every member may leave;
a project always keeps an owner. Owners add only people they share a project or a team with."""

from __future__ import annotations

from tortoise.transactions import in_transaction

from pulseboard.errors import not_found
from pulseboard.models import Project, ProjectMember, ProjectRole, User
from pulseboard.resolvers import access, tasks
from pulseboard.resolvers.context import Context
from pulseboard.resolvers.events import Transaction, transaction
from pulseboard.resolvers.pagination import Page, paginate
from pulseboard.resolvers.validation import BODY_MAX, text
from pulseboard.subscriptions import topics

# An event on the project's topic that is not a task event: it ends the user's task streams.
MEMBER_REMOVED = "MEMBER_REMOVED"


async def project(ctx: Context, project_id: object) -> Project:
    return await access.project_for(ctx.require_viewer(), project_id)


async def projects(
    ctx: Context,
    *,
    first: int | None,
    after: str | None,
    last: int | None = None,
    before: str | None = None,
) -> Page[Project]:
    viewer = ctx.require_viewer()
    query = Project.filter(access.visible_projects(viewer)).distinct()
    return await paginate(
        query, order=["id"], first=first, after=after, last=last, before=before, settings=ctx.settings
    )


async def members(ctx: Context, project: Project) -> list[User]:
    return await ctx.loaders.project_members.load(project.id)


async def memberships(ctx: Context, project: Project) -> list[ProjectMember]:
    """The project's members with their roles, in user id order (as `members`)."""
    return await ctx.loaders.project_memberships.load(project.id)


async def create_project(ctx: Context, *, name: str, description: str | None) -> Project:
    viewer = ctx.require_viewer()
    name = text("name", name)
    description = text("description", description or "", max_length=BODY_MAX, required=False, multiline=True)
    async with in_transaction():
        project = await Project.create(name=name, description=description, created_by_id=viewer.id)
        await ProjectMember.create(project_id=project.id, user_id=viewer.id, role=ProjectRole.OWNER)
    return project


async def _managed(ctx: Context, project_id: object, tx: Transaction) -> Project:
    """The project, locked for its membership change, if the viewer may manage its members:
    non-members NOT_FOUND, members who are not owners FORBIDDEN."""
    viewer = ctx.require_viewer()
    project = await access.project_for(viewer, project_id)
    await _lock(tx, project.id)
    # Checked under the lock: an owner demoted or removed a moment ago no longer manages.
    await access.require_project_manager(viewer, project.id)
    return project


async def _lock(tx: Transaction, project_id: int) -> None:
    # Serialises membership changes of one project, so the last-owner check cannot race.
    await Project.filter(id=project_id).using_db(tx.conn).select_for_update().first()


async def _member(tx: Transaction, project_id: int, user_id: object) -> ProjectMember:
    """The membership row of `user_id`; anyone who is not a member is NOT_FOUND like no one."""
    uid = access.parse_id("User", user_id)
    row = await ProjectMember.filter(project_id=project_id, user_id=uid).using_db(tx.conn).first()
    if row is None:
        raise not_found("User", user_id)
    return row


async def add_project_member(
    ctx: Context, *, project_id: object, user_id: object, role: ProjectRole = ProjectRole.MEMBER
) -> Project:
    """Owners and admins add people: owners only those they share a project or a team with.
    Adding a member again changes nothing (setProjectMemberRole changes roles)."""
    viewer = ctx.require_viewer()
    async with transaction(viewer.id) as tx:
        project = await _managed(ctx, project_id, tx)
        user = await access.addable_user(viewer, user_id)
        await ProjectMember.get_or_create(
            project_id=project.id, user_id=user.id, defaults={"role": role}, using_db=tx.conn
        )
    return project


async def set_project_member_role(
    ctx: Context, *, project_id: object, user_id: object, role: ProjectRole
) -> Project:
    viewer = ctx.require_viewer()
    async with transaction(viewer.id) as tx:
        project = await _managed(ctx, project_id, tx)
        member = await _member(tx, project.id, user_id)
        if member.role != role:
            if member.role == ProjectRole.OWNER:
                await access.keep_an_owner(project.id, member.user_id, tx.conn)
            await ProjectMember.filter(id=member.id).using_db(tx.conn).update(role=role)
    return project


async def remove_project_member(ctx: Context, *, project_id: object, user_id: object) -> Project:
    """Owners and admins remove anyone; every member may remove themselves (leave). The last
    owner stays. Ends the user's access at once: their live task streams of the project stop too.
    Only members may be assignees, so their tasks there are unassigned in the same transaction
    (an ASSIGNED event each, before MEMBER_REMOVED: a board kept from events stays right)."""
    viewer = ctx.require_viewer()
    async with transaction(viewer.id) as tx:
        project = await access.project_for(viewer, project_id)
        await _lock(tx, project.id)
        if access.parse_id("User", user_id) != viewer.id:
            await access.require_project_manager(viewer, project.id)
        member = await _member(tx, project.id, user_id)
        if member.role == ProjectRole.OWNER:
            await access.keep_an_owner(project.id, member.user_id, tx.conn)
        await ProjectMember.filter(id=member.id).using_db(tx.conn).delete()
        await tasks.unassign_member(tx, project.id, member.user_id)
        tx.emit(topics.project(project.id), MEMBER_REMOVED, {"userId": member.user_id})
    return project
