"""The Query root: each field is one call into resolvers/."""

from __future__ import annotations

from typing import Annotated

import strawberry

from pulseboard.models import TaskStatus, TicketPriority, TicketStatus
from pulseboard.resolvers import (
    directory,
    metrics,
    notifications,
    preferences,
    projects,
    queues,
    tasks,
    tickets,
)
from pulseboard.resolvers.tasks import TaskOrder
from pulseboard.resolvers.tickets import TicketOrder
from pulseboard.schema.types import (
    Connection,
    Ctx,
    NotificationConnection,
    Preferences,
    Project,
    Queue,
    QueueMetricsType,
    Task,
    Ticket,
    User,
    connection,
    load_people,
    queue_metrics,
    selects,
)

SEARCH = strawberry.argument(
    description="Only those whose title or description contains this text, ignoring case"
    " (at most 100 characters; empty searches for nothing, so filters nothing)."
)
PEOPLE_SEARCH = strawberry.argument(
    description="Only those whose name, or a word of it, starts with this text, ignoring case; or"
    " whose email starts with it (administrators) or is it (everyone else)."
    " At most 100 characters; empty filters nothing."
)


@strawberry.type
class Query:
    @strawberry.field(description="The signed-in user.")
    def viewer(self, info: Ctx) -> User:
        return info.context.require_viewer()  # type: ignore[return-value]

    @strawberry.field(
        description="Someone the viewer shares a project or a team with, or themself (anyone, for"
        " administrators); anyone else is NOT_FOUND, as an id of nobody."
    )
    async def user(self, info: Ctx, id: strawberry.ID) -> User:
        return await directory.user(info.context, id)  # type: ignore[return-value]

    @strawberry.field(
        description="The people the viewer shares a project or a team with, and themself (everyone,"
        " for administrators), in the order they first signed in."
    )
    async def users(
        self,
        info: Ctx,
        search: Annotated[str | None, PEOPLE_SEARCH] = None,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[User]:
        page = await directory.users(
            info.context,
            search=search,
            first=first,
            after=after,
            last=last,
            before=before,
            with_count=selects(info, "totalCount"),
        )
        return connection(page)

    @strawberry.field
    async def project(self, info: Ctx, id: strawberry.ID) -> Project:
        return await projects.project(info.context, id)  # type: ignore[return-value]

    @strawberry.field(description="Projects the viewer is a member of (all, for admins).")
    async def projects(
        self,
        info: Ctx,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[Project]:
        page = await projects.projects(info.context, first=first, after=after, last=last, before=before)
        return connection(page)

    @strawberry.field
    async def task(self, info: Ctx, id: strawberry.ID) -> Task:
        return await tasks.task(info.context, id)  # type: ignore[return-value]

    @strawberry.field(
        description="A project's tasks: by column (status), then position, unless orderBy says otherwise."
    )
    async def tasks(
        self,
        info: Ctx,
        project_id: strawberry.ID,
        status: TaskStatus | None = None,
        assignee_id: strawberry.ID | None = None,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        order_by: TaskOrder = TaskOrder.BOARD,
        search: Annotated[str | None, SEARCH] = None,
    ) -> Connection[Task]:
        page = await tasks.tasks(
            info.context,
            project_id=project_id,
            status=status,
            assignee_id=assignee_id,
            order_by=order_by,
            search=search,
            first=first,
            after=after,
            last=last,
            before=before,
            with_count=selects(info, "totalCount"),
        )
        await load_people(info, page, {"assignee": "assignee_id", "createdBy": "created_by_id"})
        return connection(page)

    @strawberry.field
    async def ticket(self, info: Ctx, id: strawberry.ID) -> Ticket:
        return await tickets.ticket(info.context, id)  # type: ignore[return-value]

    @strawberry.field(description="Tickets the viewer may see: newest first, unless orderBy says otherwise.")
    async def tickets(
        self,
        info: Ctx,
        queue_id: strawberry.ID | None = None,
        status: TicketStatus | None = None,
        priority: TicketPriority | None = None,
        assignee_id: strawberry.ID | None = None,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        order_by: TicketOrder = TicketOrder.NEWEST,
        search: Annotated[str | None, SEARCH] = None,
    ) -> Connection[Ticket]:
        page = await tickets.tickets(
            info.context,
            queue_id=queue_id,
            status=status,
            priority=priority,
            assignee_id=assignee_id,
            order_by=order_by,
            search=search,
            first=first,
            after=after,
            last=last,
            before=before,
            with_count=selects(info, "totalCount"),
        )
        await load_people(info, page, {"requester": "requester_id", "assignee": "assignee_id"})
        return connection(page)

    @strawberry.field
    async def queue(self, info: Ctx, id: strawberry.ID) -> Queue:
        return await queues.queue(info.context, id)  # type: ignore[return-value]

    @strawberry.field
    async def queues(
        self,
        info: Ctx,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[Queue]:
        page = await queues.queues(info.context, first=first, after=after, last=last, before=before)
        return connection(page)

    @strawberry.field(description="Live figures of a queue, for its team's agents and admins.")
    async def queue_metrics(self, info: Ctx, queue_id: strawberry.ID) -> QueueMetricsType:
        return queue_metrics(await metrics.queue_metrics(info.context, queue_id))

    @strawberry.field(description="The viewer's notification preferences.")
    async def preferences(self, info: Ctx) -> Preferences:
        return await preferences.preferences(info.context)  # type: ignore[return-value]

    @strawberry.field(description="The viewer's notifications, newest first.")
    async def notifications(
        self,
        info: Ctx,
        first: int | None = None,
        after: str | None = None,
        unread_only: bool = False,
        last: int | None = None,
        before: str | None = None,
    ) -> NotificationConnection:
        page = await notifications.notifications(
            info.context,
            first=first,
            after=after,
            last=last,
            before=before,
            unread_only=unread_only,
            with_count=selects(info, "totalCount"),
        )
        base = connection(page)
        return NotificationConnection(
            edges=base.edges,  # type: ignore[arg-type]
            page_info=base.page_info,
            count=base.count,
            unread=lambda: notifications.unread_count(info.context),
        )
