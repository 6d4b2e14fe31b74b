"""Queue metrics, computed by SQL aggregates over the queue's tickets."""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass

from tortoise import connections, timezone
from tortoise.expressions import Q
from tortoise.functions import Count

from pulseboard.models import OPEN_TICKET_STATUSES, Queue, Ticket, TicketPriority, TicketStatus
from pulseboard.resolvers import access
from pulseboard.resolvers.context import Context

AT_RISK_WINDOW = dt.timedelta(minutes=30)
FIRST_RESPONSE_WINDOW = dt.timedelta(hours=24)

_AVG_FIRST_RESPONSE = {
    "postgres": "AVG(EXTRACT(EPOCH FROM (first_response_at - created_at)))",
    "sqlite": "AVG((julianday(first_response_at) - julianday(created_at)) * 86400.0)",
}


@dataclass(frozen=True)
class QueueMetrics:
    queue_id: int
    open: int
    unassigned: int
    by_status: dict[TicketStatus, int]
    by_priority: dict[TicketPriority, int]
    oldest_open_age_seconds: int | None
    avg_first_response_seconds: float | None
    sla_breached: int
    sla_at_risk: int
    created_last_hour: int
    resolved_last_hour: int
    computed_at: dt.datetime


def same_figures(a: QueueMetrics, b: QueueMetrics) -> bool:
    """Equal in every figure (the time they were computed aside)."""
    return dataclasses.replace(a, computed_at=b.computed_at) == b


async def queue_metrics(ctx: Context, queue_id: object) -> QueueMetrics:
    queue = await access.agent_queue_for(ctx.require_viewer(), queue_id)
    return await compute(queue)


def _sla_filters(queue: Queue, now: dt.datetime) -> tuple[Q, Q]:
    """(breached, at risk) over open tickets: past, or within 30 minutes of, either target."""
    first_due = now - dt.timedelta(minutes=queue.sla_first_response_minutes)
    resolve_due = now - dt.timedelta(minutes=queue.sla_resolution_minutes)
    unanswered = Q(first_response_at__isnull=True)
    breached = Q(Q(unanswered, created_at__lt=first_due), Q(created_at__lt=resolve_due), join_type=Q.OR)
    near = Q(
        Q(unanswered, created_at__lt=first_due + AT_RISK_WINDOW),
        Q(created_at__lt=resolve_due + AT_RISK_WINDOW),
        join_type=Q.OR,
    )
    return breached, Q(near, ~breached)


async def _avg_first_response(queue: Queue, since: dt.datetime) -> float | None:
    conn = connections.get("default")
    dialect = conn.capabilities.dialect
    p1, p2 = ("$1", "$2") if dialect == "postgres" else ("?", "?")
    sql = (
        f"SELECT {_AVG_FIRST_RESPONSE[dialect]} AS avg FROM tickets"
        f" WHERE queue_id = {p1} AND first_response_at >= {p2}"
    )
    _, rows = await conn.execute_query(sql, [queue.id, _db_time(dialect, since)])
    value = rows[0]["avg"] if rows else None
    return None if value is None else round(float(value), 3)


async def compute(queue: Queue) -> QueueMetrics:
    now = timezone.now()
    tickets = Ticket.filter(queue_id=queue.id)
    open_tickets = tickets.filter(status__in=OPEN_TICKET_STATUSES)
    by_status = dict.fromkeys(TicketStatus, 0)
    for row in await tickets.annotate(n=Count("id")).group_by("status").values("status", "n"):
        by_status[TicketStatus(row["status"])] = row["n"]
    by_priority = dict.fromkeys(TicketPriority, 0)
    for row in await open_tickets.annotate(n=Count("id")).group_by("priority").values("priority", "n"):
        by_priority[TicketPriority(row["priority"])] = row["n"]
    oldest_row = await open_tickets.order_by("created_at").first()
    breached, at_risk = _sla_filters(queue, now)
    hour_ago = now - dt.timedelta(hours=1)
    return QueueMetrics(
        queue_id=queue.id,
        open=sum(by_status[s] for s in OPEN_TICKET_STATUSES),
        unassigned=await open_tickets.filter(assignee_id__isnull=True).count(),
        by_status=by_status,
        by_priority=by_priority,
        oldest_open_age_seconds=(
            None if oldest_row is None else int((now - oldest_row.created_at).total_seconds())
        ),
        avg_first_response_seconds=await _avg_first_response(queue, now - FIRST_RESPONSE_WINDOW),
        sla_breached=await open_tickets.filter(breached).count(),
        sla_at_risk=await open_tickets.filter(at_risk).count(),
        created_last_hour=await tickets.filter(created_at__gte=hour_ago).count(),
        resolved_last_hour=await tickets.filter(resolved_at__gte=hour_ago).count(),
        computed_at=now,
    )


def _db_time(dialect: str, value: dt.datetime) -> dt.datetime | str:
    # Tortoise stores SQLite datetimes as ISO text, so compare with the same spelling.
    return value.isoformat(sep=" ") if dialect == "sqlite" else value
