"""GraphQL input types, and `provided` to tell a field left out from one set to null."""

from __future__ import annotations

import datetime as dt
from typing import Any

import strawberry
from strawberry.utils.str_converters import to_camel_case

from pulseboard.models import (
    NotificationChannel,
    NotificationType,
    TaskPriority,
    TaskStatus,
    TicketPriority,
    TicketStatus,
)
from pulseboard.resolvers.preferences import QuietHours


def provided(value: object) -> dict[str, Any]:
    """The fields the client sent, keyed by their GraphQL names."""
    definition = value.__strawberry_definition__  # type: ignore[attr-defined]
    return {
        field.graphql_name or to_camel_case(field.python_name): getattr(value, field.python_name)
        for field in definition.fields
        if getattr(value, field.python_name) is not strawberry.UNSET
    }


@strawberry.input
class CreateProjectInput:
    name: str
    description: str | None = None


@strawberry.input
class CreateTeamInput:
    name: str


@strawberry.input
class CreateTaskInput:
    project_id: strawberry.ID
    title: str
    description: str | None = None
    status: TaskStatus | None = None
    priority: TaskPriority | None = None
    assignee_id: strawberry.ID | None = None
    due_at: dt.datetime | None = None


@strawberry.input(description="Only the fields sent are changed; dueAt: null clears the due date.")
class UpdateTaskInput:
    title: str | None = strawberry.UNSET
    description: str | None = strawberry.UNSET
    priority: TaskPriority | None = strawberry.UNSET
    progress: int | None = strawberry.UNSET
    due_at: dt.datetime | None = strawberry.UNSET


@strawberry.input
class CreateQueueInput:
    team_id: strawberry.ID
    name: str
    sla_first_response_minutes: int
    sla_resolution_minutes: int


@strawberry.input
class CreateTicketInput:
    queue_id: strawberry.ID
    title: str
    description: str | None = None
    priority: TicketPriority | None = None


@strawberry.input(description="Only the fields sent are changed.")
class UpdateTicketInput:
    title: str | None = strawberry.UNSET
    description: str | None = strawberry.UNSET


@strawberry.input(description="Only the fields sent are changed; assigneeId: null unassigns.")
class BulkUpdateTicketsInput:
    status: TicketStatus | None = strawberry.UNSET
    priority: TicketPriority | None = strawberry.UNSET
    assignee_id: strawberry.ID | None = strawberry.UNSET


@strawberry.input
class NotificationTypePreferenceInput:
    type: NotificationType
    in_app: bool | None = strawberry.UNSET
    browser: bool | None = strawberry.UNSET
    email: bool | None = strawberry.UNSET


@strawberry.input
class QuietHoursInput:
    start: str
    end: str
    timezone: str


@strawberry.input(description="Only the fields sent are changed; quietHours: null turns them off.")
class UpdatePreferencesInput:
    enabled: bool | None = strawberry.UNSET
    sound: bool | None = strawberry.UNSET
    types: list[NotificationTypePreferenceInput] | None = strawberry.UNSET
    quiet_hours: QuietHoursInput | None = strawberry.UNSET
    due_reminder_minutes: int | None = strawberry.UNSET


def preference_changes(
    value: UpdatePreferencesInput,
) -> tuple[dict[str, Any], list[tuple[NotificationType, dict[NotificationChannel, bool]]]]:
    """The sent fields of an UpdatePreferencesInput in the shapes resolvers/preferences takes."""
    values = provided(value)
    quiet = values.get("quietHours")
    if quiet is not None:
        values["quietHours"] = QuietHours(quiet.start, quiet.end, quiet.timezone)
    types = []
    for entry in values.pop("types", None) or []:
        sent = {
            NotificationChannel.IN_APP: entry.in_app,
            NotificationChannel.BROWSER: entry.browser,
            NotificationChannel.EMAIL: entry.email,
        }
        types.append((entry.type, {c: on for c, on in sent.items() if isinstance(on, bool)}))
    return values, types
