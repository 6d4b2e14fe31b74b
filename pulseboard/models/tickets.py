"""Support queues, tickets and ticket comments."""

from tortoise import fields
from tortoise.indexes import Index
from tortoise.models import Model

from pulseboard.models.enums import TicketPriority, TicketStatus, urgency
from pulseboard.models.users import Team, User


class Queue(Model):
    team_id: int
    id = fields.IntField(primary_key=True)
    team: fields.ForeignKeyRelation[Team] = fields.ForeignKeyField(
        "models.Team", related_name="queues", on_delete=fields.RESTRICT
    )
    name = fields.CharField(max_length=200)
    sla_first_response_minutes = fields.IntField()
    sla_resolution_minutes = fields.IntField()
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "queues"
        indexes = [Index(fields=("team_id",), name="queues_team_idx")]


class Ticket(Model):
    queue_id: int
    requester_id: int
    assignee_id: int | None
    id = fields.IntField(primary_key=True)
    queue: fields.ForeignKeyRelation[Queue] = fields.ForeignKeyField(
        "models.Queue", related_name="tickets", on_delete=fields.RESTRICT
    )
    title = fields.CharField(max_length=200)
    description = fields.TextField(default="")
    status = fields.CharEnumField(TicketStatus, max_length=16, default=TicketStatus.NEW)
    priority = fields.CharEnumField(TicketPriority, max_length=16, default=TicketPriority.NORMAL)
    # urgency(priority), kept beside it by every write: lists ordered by priority page on it.
    urgency = fields.SmallIntField(
        default=urgency(TicketPriority.NORMAL), db_default=urgency(TicketPriority.NORMAL)
    )
    requester: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="requested_tickets", on_delete=fields.RESTRICT
    )
    assignee: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="assigned_tickets", null=True, on_delete=fields.SET_NULL
    )
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)
    first_response_at = fields.DatetimeField(null=True)
    resolved_at = fields.DatetimeField(null=True)
    version = fields.IntField(default=1)

    class Meta:
        table = "tickets"
        # Ticket lists run newest first (by id) within a queue's, a requester's or an assignee's
        # tickets; (queue_id, status) serves the queue metrics' counts by status.
        indexes = [
            Index(fields=("queue_id", "id"), name="tickets_queue_idx"),
            Index(fields=("queue_id", "status"), name="tickets_queue_status_idx"),
            Index(fields=("requester_id", "id"), name="tickets_requester_idx"),
            Index(fields=("assignee_id", "id"), name="tickets_assignee_idx"),
            # tickets(queueId, orderBy: PRIORITY): most urgent first, oldest first within.
            Index(fields=("queue_id", "urgency", "id"), name="tickets_priority_idx"),
        ]


class TicketComment(Model):
    ticket_id: int
    author_id: int
    id = fields.IntField(primary_key=True)
    ticket: fields.ForeignKeyRelation[Ticket] = fields.ForeignKeyField(
        "models.Ticket", related_name="comments", on_delete=fields.CASCADE
    )
    author: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="ticket_comments", on_delete=fields.RESTRICT
    )
    body = fields.TextField()
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "ticket_comments"
        # A ticket's comments page in id order, so id rides along: the page is read off the index.
        indexes = [Index(fields=("ticket_id", "id"), name="ticket_comments_ticket_idx")]
