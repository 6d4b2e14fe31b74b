"""Tortoise models, one module per aggregate; migrations/ holds their shipped migrations."""

from pulseboard.models.enums import (
    OPEN_TICKET_STATUSES,
    NotificationChannel,
    NotificationType,
    ProjectRole,
    Role,
    TaskPriority,
    TaskStatus,
    TicketPriority,
    TicketStatus,
    urgency,
)
from pulseboard.models.events import Event, TopicCounter
from pulseboard.models.idempotency import IdempotencyKey
from pulseboard.models.notifications import EmailOutbox, Notification, NotificationPreferences
from pulseboard.models.projects import Project, ProjectMember, Task, TaskComment
from pulseboard.models.tickets import Queue, Ticket, TicketComment
from pulseboard.models.users import Team, TeamMember, User

__all__ = [
    "OPEN_TICKET_STATUSES",
    "EmailOutbox",
    "Event",
    "IdempotencyKey",
    "Notification",
    "NotificationChannel",
    "NotificationPreferences",
    "NotificationType",
    "Project",
    "ProjectMember",
    "ProjectRole",
    "Queue",
    "Role",
    "Task",
    "TaskComment",
    "TaskPriority",
    "TaskStatus",
    "Team",
    "TeamMember",
    "Ticket",
    "TicketComment",
    "TicketPriority",
    "TicketStatus",
    "TopicCounter",
    "User",
    "urgency",
]
