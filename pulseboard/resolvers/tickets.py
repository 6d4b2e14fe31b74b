"""Tickets in support queues: assignment, status, priority, comments, bulk changes, events."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

from tortoise import timezone
from tortoise.expressions import Q

from pulseboard.errors import bad_input, conflict, forbidden, not_found
from pulseboard.models import (
    NotificationType,
    Role,
    Ticket,
    TicketComment,
    TicketPriority,
    TicketStatus,
    User,
    urgency,
)
from pulseboard.resolvers import access, notifications
from pulseboard.resolvers.context import Context
from pulseboard.resolvers.events import Transaction, change, snapshot, transaction, update_versioned
from pulseboard.resolvers.pagination import Page, page_args, page_of, paginate
from pulseboard.resolvers.validation import BODY_MAX, searched, text
from pulseboard.subscriptions import topics

BULK_MAX = 100


class TicketOrder(StrEnum):
    NEWEST = "NEWEST"  # most recently opened first
    OLDEST = "OLDEST"
    PRIORITY = "PRIORITY"  # most urgent first, oldest first within a priority: triage order


# Each order's key, as pagination reads it (an index per order: see models.tickets.Ticket).
ORDERS = {TicketOrder.NEWEST: ["-id"], TicketOrder.OLDEST: ["id"], TicketOrder.PRIORITY: ["urgency", "id"]}


async def ticket(ctx: Context, ticket_id: object) -> Ticket:
    found, _ = await access.ticket_for(ctx.require_viewer(), ticket_id)
    return found


async def tickets(
    ctx: Context,
    *,
    queue_id: object | None,
    status: TicketStatus | None,
    priority: TicketPriority | None,
    assignee_id: object | None,
    first: int | None,
    after: str | None,
    with_count: bool = False,
    last: int | None = None,
    before: str | None = None,
    order_by: TicketOrder = TicketOrder.NEWEST,
    search: str | None = None,
) -> Page[Ticket]:
    """The tickets the viewer may see, newest first unless `order_by` says otherwise; `search`
    keeps those whose title or description contains it, ignoring case. Only an empty page looks
    up the queue: tickets of one exist only in a queue that does (else NOT_FOUND)."""
    viewer = ctx.require_viewer()
    query = Ticket.filter(await access.visible_tickets(viewer))
    qid = None if queue_id is None else access.parse_id("Queue", queue_id)
    if qid is not None:
        query = query.filter(queue_id=qid)
    if status is not None:
        query = query.filter(status=status)
    if priority is not None:
        query = query.filter(priority=priority)
    if assignee_id is not None:
        query = query.filter(assignee_id=access.parse_id("User", assignee_id))
    if words := searched(search):
        query = query.filter(Q(title__icontains=words) | Q(description__icontains=words))
    page = await paginate(
        query,
        order=ORDERS[order_by],
        first=first,
        after=after,
        last=last,
        before=before,
        settings=ctx.settings,
        with_count=with_count,
    )
    if qid is not None and not page.items:
        await access.queue_for(viewer, qid)
    return page


async def may_read(ctx: Context, ticket: Ticket) -> bool:
    """Whether the viewer may see `ticket` now: its requester, its queue's agents and admins. No
    query but for agents, and for them one per list of tickets."""
    viewer = ctx.require_viewer()
    if access.is_admin(viewer) or ticket.requester_id == viewer.id:
        return True
    if viewer.role != Role.AGENT:
        return False
    return await ctx.loaders.worked.load((viewer.id, ticket.id))


async def comments(
    ctx: Context,
    ticket: Ticket,
    *,
    first: int | None,
    after: str | None,
    last: int | None = None,
    before: str | None = None,
) -> Page[TicketComment]:
    """Through loaders: a list of tickets reads all their pages and counts in one query each.
    The field checks access itself (a ticket may be reached through an event's payload): those
    who may see the ticket see every comment (there are no internal notes); anyone else NOT_FOUND."""
    if not await may_read(ctx, ticket):
        raise not_found("Ticket", ticket.id)
    args = page_args(ctx.settings, first, after, arity=1, last=last, before=before)
    rows = await ctx.loaders.ticket_comments.load((ticket.id, args))
    return page_of(
        rows, order=["id"], args=args, count=lambda: ctx.loaders.ticket_comment_counts.load(ticket.id)
    )


async def create_ticket(
    ctx: Context, *, queue_id: object, title: str, description: str | None, priority: TicketPriority | None
) -> Ticket:
    viewer = ctx.require_viewer()
    queue = await access.queue_for(viewer, queue_id)
    title = text("title", title)
    description = text("description", description or "", max_length=BODY_MAX, required=False, multiline=True)
    async with transaction(viewer.id) as tx:
        created = await Ticket.create(
            queue_id=queue.id,
            title=title,
            description=description,
            priority=priority or TicketPriority.NORMAL,
            urgency=urgency(priority or TicketPriority.NORMAL),
            requester_id=viewer.id,
            using_db=tx.conn,
        )
        _emit(tx, "CREATED", created, [])
    return created


async def _locked(tx: Transaction, ticket_id: int, expected_version: int | None) -> Ticket:
    current = await Ticket.filter(id=ticket_id).select_for_update().using_db(tx.conn).get()
    if expected_version is not None and current.version != expected_version:
        raise conflict("Ticket", ticket_id, current.version)
    return current


async def _writable(ctx: Context, tx: Transaction, ticket_id: object, expected_version: int | None) -> Ticket:
    found = await access.ticket_for_agent(ctx.require_viewer(), ticket_id)
    return await _locked(tx, found.id, expected_version)


async def _apply(tx: Transaction, ticket: Ticket, **values: Any) -> Ticket:
    """Conditional update on the version we read: a concurrent write is never overwritten."""
    if "priority" in values:
        values["urgency"] = urgency(values["priority"])
    updated = await update_versioned(tx.conn, ticket, **values)
    if updated is None:
        raise conflict("Ticket", ticket.id, ticket.version)
    return updated


def _emit(tx: Transaction, type: str, ticket: Ticket, changes: list[dict[str, Any]], **extra: Any) -> None:
    """The change on its queue's stream (ticketEvents) and on the ticket's own (ticketUpdates):
    each topic numbers its events itself, so a ticket's stream is gap-free on its own."""
    payload = {"ticket": snapshot(ticket), "changes": changes, **extra}
    for topic in (topics.queue(ticket.queue_id), topics.ticket(ticket.id)):
        tx.emit(topic, type, payload)


async def _check_assignee(ticket: Ticket, assignee_id: object | None) -> int | None:
    if assignee_id is None:
        return None
    user = await User.get_or_none(id=access.parse_id("User", assignee_id))
    queue = await ticket.queue
    if user is None or not await access.is_queue_agent(user, queue):
        raise bad_input("assigneeId", "The assignee must be an agent of the ticket's queue.")
    return user.id


async def update_ticket(
    ctx: Context, *, ticket_id: object, values: Mapping[str, Any], expected_version: int | None
) -> Ticket:
    checked: dict[str, Any] = {}
    if "title" in values:
        checked["title"] = text("title", values["title"] or "")
    if "description" in values:
        checked["description"] = text(
            "description", values["description"] or "", max_length=BODY_MAX, required=False, multiline=True
        )
    async with transaction(ctx.require_viewer().id) as tx:
        current = await _writable(ctx, tx, ticket_id, expected_version)
        changes = [change(k, getattr(current, k), v) for k, v in checked.items() if getattr(current, k) != v]
        if not changes:
            return current
        updated = await _apply(tx, current, **checked)
        _emit(tx, "UPDATED", updated, changes)
    return updated


async def _assign(tx: Transaction, current: Ticket, assignee: int | None) -> Ticket:
    assigned = await _apply(tx, current, assignee_id=assignee)
    details = {"assigneeId": assignee, "previousAssigneeId": current.assignee_id}
    _emit(tx, "ASSIGNED", assigned, [change("assigneeId", current.assignee_id, assignee)], **details)
    if assignee is not None:
        tx.emit(topics.user_tickets(assignee), "ASSIGNED", {"ticket": snapshot(assigned), **details})
        await notifications.notify(
            tx,
            recipients=[assignee],
            type=NotificationType.TICKET_ASSIGNED,
            title=f"You were assigned ticket {assigned.title}",
            ticket=assigned,
        )
    return assigned


async def assign_ticket(
    ctx: Context, *, ticket_id: object, assignee_id: object | None, expected_version: int | None
) -> Ticket:
    async with transaction(ctx.require_viewer().id) as tx:
        current = await _writable(ctx, tx, ticket_id, expected_version)
        assignee = await _check_assignee(current, assignee_id)
        if assignee == current.assignee_id:
            return current
        assigned = await _assign(tx, current, assignee)
    return assigned


def _status_values(current: Ticket, status: TicketStatus) -> dict[str, Any]:
    """resolvedAt is set on (re)entering RESOLVED, kept on CLOSED, cleared on reopening."""
    if status == TicketStatus.RESOLVED:
        return {"status": status, "resolved_at": timezone.now()}
    if status == TicketStatus.CLOSED:
        return {"status": status, "resolved_at": current.resolved_at or timezone.now()}
    return {"status": status, "resolved_at": None}


async def _set_status(tx: Transaction, current: Ticket, status: TicketStatus) -> Ticket:
    updated = await _apply(tx, current, **_status_values(current, status))
    _emit(tx, "STATUS_CHANGED", updated, [change("status", current.status, status)])
    await notifications.notify(
        tx,
        recipients=[updated.requester_id, updated.assignee_id],
        type=NotificationType.TICKET_STATUS_CHANGED,
        title=f"Ticket {updated.title} is now {status.value}",
        ticket=updated,
    )
    return updated


async def set_status(
    ctx: Context, *, ticket_id: object, status: TicketStatus, expected_version: int | None
) -> Ticket:
    async with transaction(ctx.require_viewer().id) as tx:
        current = await _writable(ctx, tx, ticket_id, expected_version)
        if current.status == status:
            return current
        updated = await _set_status(tx, current, status)
    return updated


async def _set_priority(tx: Transaction, current: Ticket, priority: TicketPriority) -> Ticket:
    updated = await _apply(tx, current, priority=priority)
    _emit(tx, "PRIORITY_CHANGED", updated, [change("priority", current.priority, priority)])
    await notifications.notify(
        tx,
        recipients=[updated.assignee_id],
        type=NotificationType.TICKET_PRIORITY_CHANGED,
        title=f"Ticket {updated.title} is now {priority.value} priority",
        ticket=updated,
    )
    return updated


async def set_priority(
    ctx: Context, *, ticket_id: object, priority: TicketPriority, expected_version: int | None
) -> Ticket:
    async with transaction(ctx.require_viewer().id) as tx:
        current = await _writable(ctx, tx, ticket_id, expected_version)
        if current.priority == priority:
            return current
        updated = await _set_priority(tx, current, priority)
    return updated


async def add_comment(ctx: Context, *, ticket_id: object, body: str) -> TicketComment:
    viewer = ctx.require_viewer()
    body = text("body", body, max_length=BODY_MAX, multiline=True)
    found, _ = await access.ticket_for(viewer, ticket_id)
    async with transaction(viewer.id) as tx:
        current = await _locked(tx, found.id, None)
        comment = await TicketComment.create(
            ticket_id=current.id, author_id=viewer.id, body=body, using_db=tx.conn
        )
        if current.first_response_at is None and viewer.id != current.requester_id:
            current = await _apply(tx, current, first_response_at=comment.created_at)
        _emit(tx, "COMMENTED", current, [], comment=snapshot(comment))
        await notifications.notify(
            tx,
            recipients=[current.requester_id, current.assignee_id],
            type=NotificationType.TICKET_COMMENTED,
            title=f"New comment on ticket {current.title}",
            body=body[:500],
            ticket=current,
        )
    return comment


async def bulk_update(
    ctx: Context, *, ticket_ids: Sequence[object], values: Mapping[str, Any]
) -> list[Ticket]:
    """Apply status/priority/assignee to every ticket, or to none: any failure rolls all back."""
    viewer = ctx.require_viewer()
    if not ticket_ids:
        raise bad_input("ids", "ids must not be empty.")
    if len(ticket_ids) > BULK_MAX:
        raise bad_input("ids", f"At most {BULK_MAX} tickets at once.")
    for name in ("status", "priority"):
        if name in values and values[name] is None:
            raise bad_input(name, f"{name} cannot be null.")
    ids = list(dict.fromkeys(access.parse_id("Ticket", i) for i in ticket_ids))
    results = []
    async with transaction(viewer.id) as tx:
        for tid in ids:
            found, agent = await access.ticket_for(viewer, tid)
            if not agent:
                raise forbidden(f"Only agents of ticket {tid}'s queue may change it.")
            current = await _locked(tx, found.id, None)
            if "assigneeId" in values:
                assignee = await _check_assignee(current, values["assigneeId"])
                if assignee != current.assignee_id:
                    current = await _assign(tx, current, assignee)
            if "status" in values and values["status"] != current.status:
                current = await _set_status(tx, current, values["status"])
            if "priority" in values and values["priority"] != current.priority:
                current = await _set_priority(tx, current, values["priority"])
            results.append(current)
    return results
