"""The Subscription root: resolvers/live authorizes once, then each event becomes a GraphQL object."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, aclosing
from enum import Enum
from typing import TypeVar

import strawberry

from pulseboard.models import Notification as NotificationRow
from pulseboard.models import Task as TaskRow
from pulseboard.models import TaskComment as TaskCommentRow
from pulseboard.models import TaskStatus
from pulseboard.models import Ticket as TicketRow
from pulseboard.models import TicketComment as TicketCommentRow
from pulseboard.resolvers import live, presence
from pulseboard.resolvers.events import restore
from pulseboard.resolvers.loaders import Loaders
from pulseboard.resolvers.metrics import QueueMetrics
from pulseboard.schema.delivery import Source
from pulseboard.schema.types import (
    Ctx,
    Notification,
    QueueMetricsType,
    Task,
    TaskComment,
    TaskPosition,
    Ticket,
    TicketComment,
    User,
    queue_metrics,
)
from pulseboard.subscriptions.encoding import EventMessage, cursor
from pulseboard.subscriptions.metrics import Watcher
from pulseboard.subscriptions.presence import Change, Inbox, Viewer

T = TypeVar("T")


@strawberry.enum
class TaskEventType(Enum):
    CREATED = "CREATED"
    UPDATED = "UPDATED"
    MOVED = "MOVED"
    ASSIGNED = "ASSIGNED"
    COMPLETED = "COMPLETED"
    DELETED = "DELETED"
    COMMENTED = "COMMENTED"


@strawberry.enum
class TicketEventType(Enum):
    CREATED = "CREATED"
    UPDATED = "UPDATED"
    STATUS_CHANGED = "STATUS_CHANGED"
    PRIORITY_CHANGED = "PRIORITY_CHANGED"
    ASSIGNED = "ASSIGNED"
    COMMENTED = "COMMENTED"


@strawberry.enum
class NotificationEventType(Enum):
    CREATED = "CREATED"
    READ = "READ"
    DELETED = "DELETED"


@strawberry.type
class FieldChange:
    field: str
    from_: str | None = strawberry.field(name="from")
    to: str | None


async def _user(info: Ctx, user_id: int | None) -> User | None:
    return None if user_id is None else await info.context.loaders.user.load(user_id)  # type: ignore[return-value]


@strawberry.type
class TaskEvent:
    cursor: str = strawberry.field(description="Resume after this event with taskEvents(after:).")
    type: TaskEventType
    task: Task = strawberry.field(description="The task as it was right after this change.")
    changes: list[FieldChange]
    occurred_at: dt.datetime
    displaced: list[TaskPosition] = strawberry.field(
        description="Every other task whose status column or position this change shifted, with "
        "where it is now (empty when none moved). Apply these and the event's own task, and a "
        "board stays exactly right."
    )
    comment: TaskComment | None = strawberry.field(
        description="The comment, on COMMENTED events (null on the others)."
    )
    actor_id: strawberry.Private[int | None]

    @strawberry.field
    async def actor(self, info: Ctx) -> User | None:
        return await _user(info, self.actor_id)


@strawberry.type
class TicketEvent:
    cursor: str = strawberry.field(
        description="Resume after this event with `after` of the field it came from."
    )
    type: TicketEventType
    ticket: Ticket = strawberry.field(description="The ticket as it was right after this change.")
    changes: list[FieldChange]
    occurred_at: dt.datetime
    comment: TicketComment | None = strawberry.field(
        description="The comment, on COMMENTED events (null on the others)."
    )
    actor_id: strawberry.Private[int | None]

    @strawberry.field
    async def actor(self, info: Ctx) -> User | None:
        return await _user(info, self.actor_id)


@strawberry.type
class TicketAssignment:
    cursor: str
    ticket: Ticket = strawberry.field(description="The ticket as it was right after the assignment.")
    occurred_at: dt.datetime
    assignee_id: strawberry.Private[int]
    previous_assignee_id: strawberry.Private[int | None]
    actor_id: strawberry.Private[int | None]

    @strawberry.field
    async def assignee(self, info: Ctx) -> User:
        return await _user(info, self.assignee_id)  # type: ignore[return-value]

    @strawberry.field
    async def previous_assignee(self, info: Ctx) -> User | None:
        return await _user(info, self.previous_assignee_id)

    @strawberry.field
    async def assigned_by(self, info: Ctx) -> User | None:
        return await _user(info, self.actor_id)


@strawberry.type
class NotificationEvent:
    cursor: str
    type: NotificationEventType
    notifications: list[Notification] = strawberry.field(
        description="The notification created or deleted, or those marked read. A CREATED one "
        "whose delivery says inApp: false is for the browser only: no list shows it."
    )
    occurred_at: dt.datetime
    unread_count: int | None = strawberry.field(
        description="The viewer's unread notifications right after this change (null on events "
        "logged before it was recorded)."
    )
    actor_id: strawberry.Private[int | None]

    @strawberry.field(description="Whose change caused it (the viewer, for their own reads and deletes).")
    async def actor(self, info: Ctx) -> User | None:
        return await _user(info, self.actor_id)


def _changes(message: EventMessage) -> list[FieldChange]:
    return [FieldChange(field=c["field"], from_=c["from"], to=c["to"]) for c in message.payload["changes"]]


def _displaced(message: EventMessage) -> list[TaskPosition]:
    # Events logged before boards carried their shifts have no `displaced`: none is known.
    return [
        TaskPosition(id=strawberry.ID(str(d["id"])), status=TaskStatus(d["status"]), position=d["position"])
        for d in message.payload.get("displaced", ())
    ]


def _task_event(message: EventMessage) -> TaskEvent:
    comment = message.payload.get("comment")
    return TaskEvent(
        cursor=cursor(message.topic, message.seq),
        type=TaskEventType(message.type),
        task=restore(TaskRow, message.payload["task"]),  # type: ignore[arg-type]
        changes=_changes(message),
        occurred_at=message.created_at,
        displaced=_displaced(message),
        comment=None if comment is None else restore(TaskCommentRow, comment),  # type: ignore[arg-type]
        actor_id=message.actor_id,
    )


def _ticket_event(message: EventMessage) -> TicketEvent:
    comment = message.payload.get("comment")
    return TicketEvent(
        cursor=cursor(message.topic, message.seq),
        type=TicketEventType(message.type),
        ticket=restore(TicketRow, message.payload["ticket"]),  # type: ignore[arg-type]
        changes=_changes(message),
        occurred_at=message.created_at,
        comment=None if comment is None else restore(TicketCommentRow, comment),  # type: ignore[arg-type]
        actor_id=message.actor_id,
    )


def _assignment(message: EventMessage) -> TicketAssignment:
    return TicketAssignment(
        cursor=cursor(message.topic, message.seq),
        ticket=restore(TicketRow, message.payload["ticket"]),  # type: ignore[arg-type]
        occurred_at=message.created_at,
        assignee_id=message.payload["assigneeId"],
        previous_assignee_id=message.payload["previousAssigneeId"],
        actor_id=message.actor_id,
    )


def _notification_event(message: EventMessage) -> NotificationEvent:
    rows = [restore(NotificationRow, n) for n in message.payload["notifications"]]
    return NotificationEvent(
        cursor=cursor(message.topic, message.seq),
        type=NotificationEventType(message.type),
        notifications=rows,  # type: ignore[arg-type]
        occurred_at=message.created_at,
        unread_count=message.payload.get("unreadCount"),
        actor_id=message.actor_id,
    )


@strawberry.enum
class PresenceEventType(Enum):
    SNAPSHOT = "SNAPSHOT"
    JOINED = "JOINED"
    CHANGED = "CHANGED"
    LEFT = "LEFT"


@strawberry.type(description="One person viewing a project, however many tabs or sockets they have open.")
class Presence:
    task_id: strawberry.ID | None = strawberry.field(
        description="The task they look at (their tab editing one, else the one they set last)."
    )
    editing: bool
    since: dt.datetime = strawberry.field(description="Since when they have been viewing (their first tab).")
    user_id: strawberry.Private[int]

    @strawberry.field
    async def user(self, info: Ctx) -> User:
        return await _user(info, self.user_id)  # type: ignore[return-value]


@strawberry.type
class PresenceEvent:
    type: PresenceEventType
    viewers: list[Presence] = strawberry.field(
        description="Everyone viewing the project after this change, the subscriber included, by arrival."
    )
    user_id: strawberry.Private[int | None]

    @strawberry.field(description="Who joined, changed or left (null on SNAPSHOT).")
    async def user(self, info: Ctx) -> User | None:
        return await _user(info, self.user_id)


def _presence(viewer: Viewer) -> Presence:
    task_id = None if viewer.task_id is None else strawberry.ID(str(viewer.task_id))
    return Presence(task_id=task_id, editing=viewer.editing, since=viewer.since, user_id=viewer.user_id)


def _presence_event(change: Change) -> PresenceEvent:
    return PresenceEvent(
        type=PresenceEventType(change.type),
        viewers=[_presence(v) for v in change.viewers],
        user_id=change.user_id,
    )


async def _each(info: Ctx, feed: live.Feed, build: Callable[[EventMessage], T]) -> AsyncIterator[T]:
    """Per-subscriber execution, the way Strawberry runs a subscription field. Sockets are served
    by the delivery engine instead (SOURCES below); this path remains for schema.subscribe()."""
    async with aclosing(live.admitted(feed)) as stream:
        async for message in stream:
            info.context.loaders = live.hub().per_event(message, lambda: Loaders(shared=True))
            yield build(message)


def _snapshot(snapshot: QueueMetrics) -> QueueMetricsType:
    return queue_metrics(snapshot)


# The subscription fields as the delivery engine serves them: how each opens its feed
# (authorizing once) and how an event becomes the field's value.
SOURCES = {
    "taskEvents": Source(lambda ctx, a: live.task_events(ctx, a["projectId"], a.get("after")), _task_event),
    "ticketEvents": Source(
        lambda ctx, a: live.ticket_events(ctx, a["queueId"], a.get("after")), _ticket_event
    ),
    "ticketUpdates": Source(
        lambda ctx, a: live.ticket_updates(ctx, a["ticketId"], a.get("after")), _ticket_event
    ),
    "ticketAssigned": Source(
        lambda ctx, a: live.ticket_assignments(ctx, a["userId"], a.get("after")), _assignment
    ),
    "notifications": Source(
        lambda ctx, a: live.notification_events(ctx, a.get("after")), _notification_event
    ),
    "queueMetrics": Source(lambda ctx, a: live.queue_metrics(ctx, a["queueId"]), _snapshot, snapshots=True),
    "presence": Source(lambda ctx, a: presence.watch(ctx, a["projectId"]), _presence_event, snapshots=True),
}


# Each field authorizes when it is called and only then returns its stream, so a refusal is an
# `error` message for the operation, not an event.
@strawberry.type
class Subscription:
    @strawberry.subscription(description="Every change to the project's tasks; `after` resumes.")
    async def task_events(
        self, info: Ctx, project_id: strawberry.ID, after: str | None = None
    ) -> AsyncIterator[TaskEvent]:
        return _each(info, await live.task_events(info.context, project_id, after), _task_event)

    @strawberry.subscription(
        description="Every change to the queue's tickets, for its agents and admins; `after` resumes."
    )
    async def ticket_events(
        self, info: Ctx, queue_id: strawberry.ID, after: str | None = None
    ) -> AsyncIterator[TicketEvent]:
        return _each(info, await live.ticket_events(info.context, queue_id, after), _ticket_event)

    @strawberry.subscription(
        description="Every change to one ticket, for whoever may see it (its requester too); `after` resumes."
    )
    async def ticket_updates(
        self, info: Ctx, ticket_id: strawberry.ID, after: str | None = None
    ) -> AsyncIterator[TicketEvent]:
        return _each(info, await live.ticket_updates(info.context, ticket_id, after), _ticket_event)

    @strawberry.subscription(description="Tickets assigned to the user (yourself, or anyone for admins).")
    async def ticket_assigned(
        self, info: Ctx, user_id: strawberry.ID, after: str | None = None
    ) -> AsyncIterator[TicketAssignment]:
        return _each(info, await live.ticket_assignments(info.context, user_id, after), _assignment)

    @strawberry.subscription(description="The viewer's notifications created, read and deleted.")
    async def notifications(self, info: Ctx, after: str | None = None) -> AsyncIterator[NotificationEvent]:
        return _each(info, await live.notification_events(info.context, after), _notification_event)

    @strawberry.subscription(
        description="The queue's figures now, then after ticket changes (coalesced) and periodically."
    )
    async def queue_metrics(self, info: Ctx, queue_id: strawberry.ID) -> AsyncIterator[QueueMetricsType]:
        return _watching(await live.queue_metrics(info.context, queue_id))

    @strawberry.subscription(
        description="Who is viewing the project: a SNAPSHOT, then each join, change (setPresence) "
        "and leave. Subscribing makes the viewer present until the subscription ends."
    )
    async def presence(self, info: Ctx, project_id: strawberry.ID) -> AsyncIterator[PresenceEvent]:
        return _present(await presence.watch(info.context, project_id))


async def _watching(
    watch: AbstractAsyncContextManager[Watcher[QueueMetrics]],
) -> AsyncIterator[QueueMetricsType]:
    async with watch as watcher:
        while True:
            yield queue_metrics(await watcher.next())


async def _present(watch: AbstractAsyncContextManager[Inbox]) -> AsyncIterator[PresenceEvent]:
    async with watch as inbox:
        while True:
            yield _presence_event(await inbox.next())
