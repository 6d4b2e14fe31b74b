"""Projects and their members."""

from __future__ import annotations

from tortoise.transactions import in_transaction

from pulseboard.models import Project, ProjectMember, ProjectRole, User
from pulseboard.resolvers import access
from pulseboard.resolvers.context import Context
from pulseboard.resolvers.events import transaction
from pulseboard.resolvers.pagination import Page, paginate
from pulseboard.resolvers.users import user_by_id
from pulseboard.resolvers.validation import BODY_MAX, text
from pulseboard.subscriptions import topics

# An event on the project's topic that is not a task event: it ends the user's task streams.
MEMBER_REMOVED = "MEMBER_REMOVED"


async def project(ctx: Context, project_id: object) -> Project:
    return await access.project_for(ctx.require_viewer(), project_id)


async def projects(ctx: Context, *, first: int | None, after: str | None) -> Page[Project]:
    viewer = ctx.require_viewer()
    query = Project.filter(access.visible_projects(viewer)).distinct()
    return await paginate(query, order=["id"], first=first, after=after, settings=ctx.settings)


async def members(ctx: Context, project: Project) -> list[User]:
    return await ctx.loaders.project_members.load(project.id)


async def create_project(ctx: Context, *, name: str, description: str | None) -> Project:
    viewer = ctx.require_viewer()
    name = text("name", name)
    description = text("description", description or "", max_length=BODY_MAX, required=False, multiline=True)
    async with in_transaction():
        project = await Project.create(name=name, description=description, created_by_id=viewer.id)
        await ProjectMember.create(project_id=project.id, user_id=viewer.id, role=ProjectRole.OWNER)
    return project


async def add_project_member(ctx: Context, *, project_id: object, user_id: object) -> Project:
    project = await access.project_for(ctx.require_viewer(), project_id)
    user = await user_by_id(ctx, user_id)
    await ProjectMember.get_or_create(project_id=project.id, user_id=user.id)
    return project


async def remove_project_member(ctx: Context, *, project_id: object, user_id: object) -> Project:
    """Ends the user's access at once: their live task streams of the project stop too."""
    viewer = ctx.require_viewer()
    project = await access.project_for(viewer, project_id)
    user = await user_by_id(ctx, user_id)
    async with transaction(viewer.id) as tx:
        removed = (
            await ProjectMember.filter(project_id=project.id, user_id=user.id).using_db(tx.conn).delete()
        )
        if removed:
            tx.emit(topics.project(project.id), MEMBER_REMOVED, {"userId": user.id})
    return project
