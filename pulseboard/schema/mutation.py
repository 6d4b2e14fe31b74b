"""The Mutation root: each field is one call into resolvers/, which own rules and transactions."""

from __future__ import annotations

from typing import Any

import strawberry

from pulseboard.models import ProjectRole, Role, TaskStatus, TicketPriority, TicketStatus
from pulseboard.resolvers import notifications, preferences, presence, projects, queues, tasks, tickets, users
from pulseboard.schema.errors import RetryConflicts
from pulseboard.schema.inputs import (
    BulkUpdateTicketsInput,
    CreateProjectInput,
    CreateQueueInput,
    CreateTaskInput,
    CreateTeamInput,
    CreateTicketInput,
    UpdatePreferencesInput,
    UpdateTaskInput,
    UpdateTicketInput,
    preference_changes,
    provided,
)
from pulseboard.schema.types import (
    Ctx,
    Notification,
    Preferences,
    Project,
    Queue,
    Task,
    TaskComment,
    Team,
    Ticket,
    TicketComment,
    User,
)


def mutation(resolver: Any = None, **options: Any) -> Any:
    """`strawberry.mutation` whose field runs again whole after a serialization failure or a
    deadlock (RetryConflicts); used bare or with options, as strawberry's."""
    field = strawberry.mutation(extensions=[RetryConflicts()], **options)
    return field if resolver is None else field(resolver)


@strawberry.type
class Mutation:
    @mutation
    async def create_project(self, info: Ctx, input: CreateProjectInput) -> Project:
        return await projects.create_project(  # type: ignore[return-value]
            info.context, name=input.name, description=input.description
        )

    @mutation(
        description="Owners and admins. Owners may add only people they share a project or a team "
        "with; adding a member again changes nothing."
    )
    async def add_project_member(
        self,
        info: Ctx,
        project_id: strawberry.ID,
        user_id: strawberry.ID,
        role: ProjectRole = ProjectRole.MEMBER,
    ) -> Project:
        return await projects.add_project_member(  # type: ignore[return-value]
            info.context, project_id=project_id, user_id=user_id, role=role
        )

    @mutation(description="Owners and admins. A project always keeps at least one owner.")
    async def set_project_member_role(
        self, info: Ctx, project_id: strawberry.ID, user_id: strawberry.ID, role: ProjectRole
    ) -> Project:
        return await projects.set_project_member_role(  # type: ignore[return-value]
            info.context, project_id=project_id, user_id=user_id, role=role
        )

    @mutation(
        description="Owners and admins remove anyone, every member themselves (the last owner "
        "stays). Ends the user's access, live task streams included."
    )
    async def remove_project_member(
        self, info: Ctx, project_id: strawberry.ID, user_id: strawberry.ID
    ) -> Project:
        return await projects.remove_project_member(  # type: ignore[return-value]
            info.context, project_id=project_id, user_id=user_id
        )

    @mutation(description="Admins only.")
    async def create_team(self, info: Ctx, input: CreateTeamInput) -> Team:
        return await users.create_team(info.context, name=input.name)  # type: ignore[return-value]

    @mutation(description="Admins only.")
    async def add_team_member(self, info: Ctx, team_id: strawberry.ID, user_id: strawberry.ID) -> Team:
        return await users.add_team_member(  # type: ignore[return-value]
            info.context, team_id=team_id, user_id=user_id
        )

    @mutation(
        description="Admins only, and only when the server keeps roles (PULSEBOARD_ROLE_SOURCE=server;"
        " FORBIDDEN when they come from tokens). The last administrator cannot be demoted. Takes"
        " effect at once: the user's open sockets are closed with 4403 and re-authorized on reconnect."
    )
    async def set_user_role(self, info: Ctx, user_id: strawberry.ID, role: Role) -> User:
        return await users.set_user_role(info.context, user_id=user_id, role=role)  # type: ignore[return-value]

    @mutation
    async def create_task(self, info: Ctx, input: CreateTaskInput) -> Task:
        return await tasks.create_task(  # type: ignore[return-value]
            info.context,
            project_id=input.project_id,
            title=input.title,
            description=input.description,
            status=input.status,
            priority=input.priority,
            assignee_id=input.assignee_id,
            due_at=input.due_at,
        )

    @mutation
    async def update_task(
        self, info: Ctx, id: strawberry.ID, input: UpdateTaskInput, expected_version: int | None = None
    ) -> Task:
        return await tasks.update_task(  # type: ignore[return-value]
            info.context, task_id=id, values=provided(input), expected_version=expected_version
        )

    @mutation(
        description="Moves a task to a column at a position (0 = top); positions stay dense."
    )
    async def move_task(
        self,
        info: Ctx,
        id: strawberry.ID,
        status: TaskStatus,
        position: int,
        expected_version: int | None = None,
    ) -> Task:
        return await tasks.move_task(  # type: ignore[return-value]
            info.context, task_id=id, status=status, position=position, expected_version=expected_version
        )

    @mutation(description="assigneeId: null unassigns.")
    async def assign_task(
        self,
        info: Ctx,
        id: strawberry.ID,
        assignee_id: strawberry.ID | None,
        expected_version: int | None = None,
    ) -> Task:
        return await tasks.assign_task(  # type: ignore[return-value]
            info.context, task_id=id, assignee_id=assignee_id, expected_version=expected_version
        )

    @mutation
    async def complete_task(self, info: Ctx, id: strawberry.ID, expected_version: int | None = None) -> Task:
        return await tasks.complete_task(  # type: ignore[return-value]
            info.context, task_id=id, expected_version=expected_version
        )

    @mutation(description="Returns the task as it was before deletion.")
    async def delete_task(self, info: Ctx, id: strawberry.ID, expected_version: int | None = None) -> Task:
        return await tasks.delete_task(  # type: ignore[return-value]
            info.context, task_id=id, expected_version=expected_version
        )

    @mutation
    async def add_task_comment(self, info: Ctx, task_id: strawberry.ID, body: str) -> TaskComment:
        return await tasks.add_comment(info.context, task_id=task_id, body=body)  # type: ignore[return-value]

    @mutation(description="Admins only.")
    async def create_queue(self, info: Ctx, input: CreateQueueInput) -> Queue:
        return await queues.create_queue(  # type: ignore[return-value]
            info.context,
            team_id=input.team_id,
            name=input.name,
            sla_first_response_minutes=input.sla_first_response_minutes,
            sla_resolution_minutes=input.sla_resolution_minutes,
        )

    @mutation
    async def create_ticket(self, info: Ctx, input: CreateTicketInput) -> Ticket:
        return await tickets.create_ticket(  # type: ignore[return-value]
            info.context,
            queue_id=input.queue_id,
            title=input.title,
            description=input.description,
            priority=input.priority,
        )

    @mutation
    async def update_ticket(
        self, info: Ctx, id: strawberry.ID, input: UpdateTicketInput, expected_version: int | None = None
    ) -> Ticket:
        return await tickets.update_ticket(  # type: ignore[return-value]
            info.context, ticket_id=id, values=provided(input), expected_version=expected_version
        )

    @mutation(description="assigneeId: null unassigns.")
    async def assign_ticket(
        self,
        info: Ctx,
        id: strawberry.ID,
        assignee_id: strawberry.ID | None,
        expected_version: int | None = None,
    ) -> Ticket:
        return await tickets.assign_ticket(  # type: ignore[return-value]
            info.context, ticket_id=id, assignee_id=assignee_id, expected_version=expected_version
        )

    @mutation
    async def set_ticket_status(
        self, info: Ctx, id: strawberry.ID, status: TicketStatus, expected_version: int | None = None
    ) -> Ticket:
        return await tickets.set_status(  # type: ignore[return-value]
            info.context, ticket_id=id, status=status, expected_version=expected_version
        )

    @mutation
    async def set_ticket_priority(
        self, info: Ctx, id: strawberry.ID, priority: TicketPriority, expected_version: int | None = None
    ) -> Ticket:
        return await tickets.set_priority(  # type: ignore[return-value]
            info.context, ticket_id=id, priority=priority, expected_version=expected_version
        )

    @mutation
    async def add_ticket_comment(self, info: Ctx, ticket_id: strawberry.ID, body: str) -> TicketComment:
        return await tickets.add_comment(info.context, ticket_id=ticket_id, body=body)  # type: ignore[return-value]

    @mutation(description="Applies to every ticket or to none (at most 100).")
    async def bulk_update_tickets(
        self, info: Ctx, ids: list[strawberry.ID], input: BulkUpdateTicketsInput
    ) -> list[Ticket]:
        return await tickets.bulk_update(  # type: ignore[return-value]
            info.context, ticket_ids=ids, values=provided(input)
        )

    @mutation
    async def update_preferences(self, info: Ctx, input: UpdatePreferencesInput) -> Preferences:
        values, types = preference_changes(input)
        return await preferences.update_preferences(  # type: ignore[return-value]
            info.context, values=values, types=types
        )

    @mutation(description="Marks the viewer's notifications read (all or none; at most 100).")
    async def mark_notifications_read(self, info: Ctx, ids: list[strawberry.ID]) -> list[Notification]:
        return await notifications.mark_read(info.context, ids=ids)  # type: ignore[return-value]

    @mutation(description="Returns how many notifications were marked read.")
    async def mark_all_notifications_read(self, info: Ctx) -> int:
        return await notifications.mark_all_read(info.context)

    @mutation
    async def delete_notification(self, info: Ctx, id: strawberry.ID) -> Notification:
        return await notifications.delete_notification(info.context, notification_id=id)  # type: ignore[return-value]

    @mutation(
        description="Says which task the viewer looks at (taskId) and whether they edit it, on every "
        "presence subscription they have open for the project. False, with nothing done, when they "
        "have none."
    )
    async def set_presence(
        self,
        info: Ctx,
        project_id: strawberry.ID,
        task_id: strawberry.ID | None = None,
        editing: bool = False,
    ) -> bool:
        return await presence.set_presence(info.context, project_id, task_id, editing)
