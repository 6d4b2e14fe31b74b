"""GraphQL object types. Roots are model rows; relations resolve through per-request loaders."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Generic, TypeVar

import strawberry
from strawberry.types import Info
from strawberry.types.nodes import SelectedField, Selection

from pulseboard.models import Notification as NotificationRow
from pulseboard.models import (
    NotificationChannel,
    NotificationType,
    ProjectRole,
    Role,
    TaskPriority,
    TaskStatus,
    TicketPriority,
    TicketStatus,
)
from pulseboard.models import NotificationPreferences as PreferencesRow
from pulseboard.models import User as UserRow
from pulseboard.resolvers import access, preferences, projects, tasks, tickets
from pulseboard.resolvers.context import Context
from pulseboard.resolvers.loaders import loaded
from pulseboard.resolvers.metrics import QueueMetrics as Metrics
from pulseboard.resolvers.pagination import Page

for _enum in (
    Role,
    ProjectRole,
    TaskStatus,
    TaskPriority,
    TicketStatus,
    TicketPriority,
    NotificationType,
    NotificationChannel,
):
    strawberry.enum(_enum)
strawberry.enum(
    tasks.TaskOrder,
    description="The order of tasks(...): BOARD by column then position; NEWEST or OLDEST by when"
    " each was created; PRIORITY most urgent first, the oldest first within a priority.",
)
strawberry.enum(
    tickets.TicketOrder,
    description="The order of tickets(...): NEWEST or OLDEST by when each was opened; PRIORITY"
    " most urgent first, the oldest first within a priority (the order to work a queue in).",
)

T = TypeVar("T")
Ctx = Info[Context, None]


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type
class Edge(Generic[T]):
    cursor: str
    node: T


@strawberry.type
class Connection(Generic[T]):
    edges: list[Edge[T]]
    page_info: PageInfo
    count: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field(description="How many items match, across all pages.")
    async def total_count(self) -> int:
        return await self.count()


def selects(info: Ctx, *path: str) -> bool:
    """Whether the client selected `path` (field names as spelled in the schema, e.g.
    "edges", "node", "assignee") under this field, through fragments too: a resolver may then
    read it along with what it reads anyway."""

    def among(selections: Sequence[Selection], path: tuple[str, ...]) -> bool:
        for selection in selections:
            if not isinstance(selection, SelectedField):  # a fragment spread or an inline fragment
                if among(selection.selections, path):
                    return True
            elif selection.name == path[0] and (len(path) == 1 or among(selection.selections, path[1:])):
                return True
        return False

    return any(among(field.selections, path) for field in info.selected_fields)


async def load_people(info: Ctx, page: Page, people: Mapping[str, str]) -> None:
    """Loads at once the people the client selected on a page's nodes (`people`: field name ->
    the row's id attribute), so that each row's person then resolves without an await."""
    selected = [attribute for name, attribute in people.items() if selects(info, "edges", "node", name)]
    ids = {getattr(row, attribute) for row in page.items for attribute in selected} - {None}
    if ids:
        await info.context.loaders.user.load_many(ids)


def connection(page: Page) -> Connection:  # type: ignore[type-arg]
    return Connection(
        edges=[Edge(cursor=c, node=n) for c, n in zip(page.cursors, page.items, strict=True)],
        page_info=PageInfo(
            has_next_page=page.has_next_page,
            has_previous_page=page.has_previous_page,
            start_cursor=page.cursors[0] if page.cursors else None,
            end_cursor=page.cursors[-1] if page.cursors else None,
        ),
        count=page.count,
    )


@strawberry.type(
    name="User",
    description="Someone the viewer shares a project, task, ticket or event with. email and role "
    "are the user's own and administrators' to see: null for anyone else.",
)
class User:
    id: strawberry.ID
    name: str

    @strawberry.field(description="Null unless the viewer is this user or an administrator.")
    def email(self, info: Ctx) -> str | None:
        row: UserRow = self  # type: ignore[assignment]
        return row.email if access.sees_private_fields(info.context.viewer, row) else None

    @strawberry.field(
        description="The platform role. Null unless the viewer is this user or an administrator."
    )
    def role(self, info: Ctx) -> Role | None:
        row: UserRow = self  # type: ignore[assignment]
        return row.role if access.sees_private_fields(info.context.viewer, row) else None


def _user(info: Ctx, user_id: int | None) -> User | Awaitable[User | None] | None:
    return None if user_id is None else loaded(info.context.loaders.user, user_id)  # type: ignore[arg-type]


@strawberry.type(name="Team")
class Team:
    id: strawberry.ID
    name: str


@strawberry.type
class _Comment:
    id: strawberry.ID
    body: str
    created_at: dt.datetime
    author_id: strawberry.Private[int]

    @strawberry.field
    def author(self, info: Ctx) -> User:
        return _user(info, self.author_id)  # type: ignore[return-value]


@strawberry.type(name="Project")
class Project:
    id: strawberry.ID
    name: str
    description: str
    created_at: dt.datetime
    created_by_id: strawberry.Private[int]

    @strawberry.field
    def created_by(self, info: Ctx) -> User:
        return _user(info, self.created_by_id)  # type: ignore[return-value]

    @strawberry.field(description="The project's members, in id order (their roles: memberships).")
    async def members(self, info: Ctx) -> list[User]:
        return await projects.members(info.context, self)  # type: ignore[arg-type,return-value]

    @strawberry.field(description="The project's members with their project roles, in user id order.")
    async def memberships(self, info: Ctx) -> list[ProjectMembership]:
        return await projects.memberships(info.context, self)  # type: ignore[arg-type,return-value]


@strawberry.type(name="ProjectMembership")
class ProjectMembership:
    role: ProjectRole = strawberry.field(
        description="OWNER: manages the members (adds, removes, changes roles); MEMBER: works on tasks."
    )
    user_id: strawberry.Private[int]

    @strawberry.field
    def user(self, info: Ctx) -> User:
        return _user(info, self.user_id)  # type: ignore[return-value]


@strawberry.type(name="Task")
class Task:
    id: strawberry.ID
    title: str
    description: str
    status: TaskStatus
    position: int = strawberry.field(description="Order inside its status column, from 0.")
    priority: TaskPriority
    progress: int
    due_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime
    completed_at: dt.datetime | None
    version: int
    project_id: strawberry.Private[int]
    assignee_id: strawberry.Private[int | None]
    created_by_id: strawberry.Private[int]

    @strawberry.field
    async def project(self, info: Ctx) -> Project:
        return await info.context.loaders.project.load(self.project_id)  # type: ignore[return-value]

    @strawberry.field
    def assignee(self, info: Ctx) -> User | None:
        return _user(info, self.assignee_id)  # type: ignore[return-value]

    @strawberry.field
    def created_by(self, info: Ctx) -> User:
        return _user(info, self.created_by_id)  # type: ignore[return-value]

    @strawberry.field
    async def comments(
        self,
        info: Ctx,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[TaskComment]:
        page = await tasks.comments(info.context, self, first=first, after=after, last=last, before=before)  # type: ignore[arg-type]
        return connection(page)


@strawberry.type(name="TaskComment")
class TaskComment(_Comment):
    pass


@strawberry.type(
    name="TaskPosition",
    description="Where a task is on its board: its column and its 0-based index within the column.",
)
class TaskPosition:
    id: strawberry.ID = strawberry.field(description="The task's id, the same global id as Task.id.")
    status: TaskStatus
    position: int


@strawberry.type(name="Queue")
class Queue:
    id: strawberry.ID
    name: str
    sla_first_response_minutes: int
    sla_resolution_minutes: int
    created_at: dt.datetime
    team_id: strawberry.Private[int]

    @strawberry.field
    async def team(self, info: Ctx) -> Team:
        return await info.context.loaders.team.load(self.team_id)  # type: ignore[return-value]


@strawberry.type(name="Ticket")
class Ticket:
    id: strawberry.ID
    title: str
    description: str
    status: TicketStatus
    priority: TicketPriority
    created_at: dt.datetime
    updated_at: dt.datetime
    first_response_at: dt.datetime | None
    resolved_at: dt.datetime | None
    version: int
    queue_id: strawberry.Private[int]
    requester_id: strawberry.Private[int]
    assignee_id: strawberry.Private[int | None]

    @strawberry.field
    async def queue(self, info: Ctx) -> Queue:
        return await info.context.loaders.queue.load(self.queue_id)  # type: ignore[return-value]

    @strawberry.field
    def requester(self, info: Ctx) -> User:
        return _user(info, self.requester_id)  # type: ignore[return-value]

    @strawberry.field
    def assignee(self, info: Ctx) -> User | None:
        return _user(info, self.assignee_id)  # type: ignore[return-value]

    @strawberry.field
    async def comments(
        self,
        info: Ctx,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[TicketComment]:
        page = await tickets.comments(info.context, self, first=first, after=after, last=last, before=before)  # type: ignore[arg-type]
        return connection(page)


@strawberry.type(name="TicketComment")
class TicketComment(_Comment):
    pass


@strawberry.type(description="Where a notification went, decided once when it was made.")
class NotificationDelivery:
    in_app: bool = strawberry.field(description="Listed by `notifications` and counted as unread.")
    browser: bool = strawberry.field(description="For a browser pop-up now (never in quiet hours).")
    email: bool = strawberry.field(
        description="An e-mail is sent (when the recipient was in quiet hours, once they ended)."
    )
    sound: bool = strawberry.field(description="The pop-up may play a sound (sound on, and browser).")
    quiet: bool = strawberry.field(description="It came in the recipient's quiet hours.")


@strawberry.type(name="Notification")
class Notification:
    id: strawberry.ID
    type: NotificationType
    title: str
    body: str
    read_at: dt.datetime | None
    created_at: dt.datetime
    task_id: strawberry.ID | None = strawberry.field(description="The task it is about, if any.")
    ticket_id: strawberry.ID | None = strawberry.field(description="The ticket it is about, if any.")

    @strawberry.field(description="Its channels, as the recipient's preferences and hours were then.")
    def delivery(self) -> NotificationDelivery:
        row: NotificationRow = self  # type: ignore[assignment]
        return NotificationDelivery(
            in_app=row.in_app, browser=row.browser, email=row.email, sound=row.sound, quiet=row.quiet
        )


@strawberry.type
class NotificationConnection(Connection[Notification]):
    unread: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field(description="The viewer's unread notifications, across all pages.")
    async def unread_count(self) -> int:
        return await self.unread()


@strawberry.type
class NotificationTypePreference:
    type: NotificationType
    in_app: bool
    browser: bool
    email: bool


@strawberry.type(
    description="Browser pop-ups are silenced and e-mail held from start (included) to end"
    " (excluded); a start after the end spans midnight; a start equal to the end is no quiet hours"
    " (stored as null). In-app notifications are always stored."
)
class QuietHours:
    start: str = strawberry.field(description="Local time HH:MM when quiet hours begin.")
    end: str = strawberry.field(description="Local time HH:MM when quiet hours end.")
    timezone: str = strawberry.field(description="IANA time zone, e.g. Europe/Berlin.")


@strawberry.type(name="NotificationPreferences")
class Preferences:
    enabled: bool = strawberry.field(description="Master switch: off silences every channel.")
    sound: bool
    due_reminder_minutes: int = strawberry.field(
        description="How long before a task's due date its assignee is told it is due soon"
        " (TASK_DUE_SOON; 1 minute to 7 days, 60 unless set)."
    )

    @strawberry.field
    def types(self) -> list[NotificationTypePreference]:
        row: PreferencesRow = self  # type: ignore[assignment]
        result = []
        for type in NotificationType:
            on = preferences.channels_for(row, type)
            result.append(
                NotificationTypePreference(
                    type=type,
                    in_app=on[NotificationChannel.IN_APP],
                    browser=on[NotificationChannel.BROWSER],
                    email=on[NotificationChannel.EMAIL],
                )
            )
        return result

    @strawberry.field
    def quiet_hours(self) -> QuietHours | None:
        quiet = preferences.quiet_hours(self)  # type: ignore[arg-type]
        return QuietHours(start=quiet.start, end=quiet.end, timezone=quiet.timezone) if quiet else None


@strawberry.type
class StatusCount:
    status: TicketStatus
    count: int


@strawberry.type
class PriorityCount:
    priority: TicketPriority
    count: int


@strawberry.type(name="QueueMetrics")
class QueueMetricsType:
    queue_id: strawberry.ID
    open: int
    unassigned: int
    oldest_open_age_seconds: int | None
    avg_first_response_seconds: float | None = strawberry.field(
        description="Mean time to first response of tickets first answered in the last 24 hours."
    )
    sla_breached: int
    sla_at_risk: int = strawberry.field(
        description="Open tickets within 30 minutes of a first-response or resolution target."
    )
    created_last_hour: int
    resolved_last_hour: int
    computed_at: dt.datetime
    by_status_counts: strawberry.Private[dict[TicketStatus, int]]
    by_priority_counts: strawberry.Private[dict[TicketPriority, int]]

    @strawberry.field
    def by_status(self) -> list[StatusCount]:
        return [StatusCount(status=s, count=n) for s, n in self.by_status_counts.items()]

    @strawberry.field
    def by_priority(self) -> list[PriorityCount]:
        return [PriorityCount(priority=p, count=n) for p, n in self.by_priority_counts.items()]


def queue_metrics(metrics: Metrics) -> QueueMetricsType:
    return QueueMetricsType(
        queue_id=strawberry.ID(str(metrics.queue_id)),
        open=metrics.open,
        unassigned=metrics.unassigned,
        oldest_open_age_seconds=metrics.oldest_open_age_seconds,
        avg_first_response_seconds=metrics.avg_first_response_seconds,
        sla_breached=metrics.sla_breached,
        sla_at_risk=metrics.sla_at_risk,
        created_last_hour=metrics.created_last_hour,
        resolved_last_hour=metrics.resolved_last_hour,
        computed_at=metrics.computed_at,
        by_status_counts=metrics.by_status,
        by_priority_counts=metrics.by_priority,
    )
