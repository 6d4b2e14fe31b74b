"""Enumerations stored in the database and exposed unchanged as GraphQL enums."""

from enum import IntEnum, StrEnum


class Role(StrEnum):
    ADMIN = "ADMIN"
    AGENT = "AGENT"
    MEMBER = "MEMBER"


class ProjectRole(StrEnum):
    # OWNER: manages the project's members (adds, removes, changes roles); MEMBER: works on tasks.
    OWNER = "OWNER"
    MEMBER = "MEMBER"


class TaskStatus(IntEnum):
    # Stored as integers so that ordering by status follows the board's columns.
    TODO = 1
    IN_PROGRESS = 2
    IN_REVIEW = 3
    DONE = 4


class TaskPriority(StrEnum):
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"
    URGENT = "URGENT"


class TicketStatus(StrEnum):
    NEW = "NEW"
    OPEN = "OPEN"
    PENDING = "PENDING"
    RESOLVED = "RESOLVED"
    CLOSED = "CLOSED"


OPEN_TICKET_STATUSES = (TicketStatus.NEW, TicketStatus.OPEN, TicketStatus.PENDING)


class TicketPriority(StrEnum):
    LOW = "LOW"
    NORMAL = "NORMAL"
    HIGH = "HIGH"
    URGENT = "URGENT"


class NotificationType(StrEnum):
    TASK_ASSIGNED = "TASK_ASSIGNED"
    TASK_COMPLETED = "TASK_COMPLETED"
    TASK_COMMENTED = "TASK_COMMENTED"
    TICKET_ASSIGNED = "TICKET_ASSIGNED"
    TICKET_STATUS_CHANGED = "TICKET_STATUS_CHANGED"
    TICKET_PRIORITY_CHANGED = "TICKET_PRIORITY_CHANGED"
    TICKET_COMMENTED = "TICKET_COMMENTED"
    TASK_DUE_SOON = "TASK_DUE_SOON"  # the assignee's lead time before dueAt has begun
    TASK_OVERDUE = "TASK_OVERDUE"  # dueAt has passed and the task is not done


class NotificationChannel(StrEnum):
    IN_APP = "IN_APP"
    BROWSER = "BROWSER"
    EMAIL = "EMAIL"


def urgency(priority: TaskPriority | TicketPriority) -> int:
    """The stored sort key of a priority: 0 for URGENT up to 3 for LOW, so that an ascending
    index reads the most urgent first. (Both enums list their members least urgent first.)"""
    members = list(type(priority))
    return len(members) - 1 - members.index(priority)
