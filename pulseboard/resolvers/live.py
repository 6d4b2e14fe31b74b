"""Subscriptions' rules: who may watch what (checked once at subscribe time), where a stream
resumes, and which events each subscriber may receive (checked per event)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from pulseboard import telemetry
from pulseboard.errors import bad_input, forbidden, not_found
from pulseboard.models import Queue, User
from pulseboard.resolvers import access, metrics, notifications
from pulseboard.resolvers.context import Context
from pulseboard.resolvers.projects import MEMBER_REMOVED
from pulseboard.subscriptions import streams, topics
from pulseboard.subscriptions.encoding import EventMessage, parse_cursor
from pulseboard.subscriptions.hub import Hub, current, head
from pulseboard.subscriptions.metrics import Watcher

# The event types of a user's topics that carry tickets or notifications (all of them).
ASSIGNED = "ASSIGNED"
NOTIFICATION_EVENTS = frozenset({"CREATED", "READ", "DELETED"})


def hub() -> Hub:
    running = current()
    if running is None:
        raise RuntimeError("no hub: subscriptions need the app's lifespan to be running")
    return running


def _deliver_all(message: EventMessage) -> bool:
    return True


@dataclass(frozen=True)
class Feed:
    """A subscriber's view of a topic: from after `after` (None: from now on); `admit` says
    whether an event is for this subscriber, or raises the AppError that ends its stream. It
    is True for every event type outside `gated`, so the engine asks it only for those."""

    topic: str
    after: int | None
    admit: Callable[[EventMessage], bool] = _deliver_all
    gated: frozenset[str] = frozenset()


async def _feed(
    topic: str,
    after: str | None,
    admit: Callable[[EventMessage], bool] = _deliver_all,
    gated: frozenset[str] = frozenset(),
    *,
    since: int | None = None,
) -> Feed:
    """The feed from `after` (a cursor of `topic`). A cursor past the topic's head (`since`, when
    the caller read it already) names an event that was never committed: BAD_USER_INPUT rather
    than a stream that stays silent until the topic catches up with it, then skips what lies
    between. Heads only grow, so any cursor the server handed out passes."""
    if after is None:
        return Feed(topic, None, admit, gated)
    seq = parse_cursor(after, topic)
    if seq > (await head(topic) if since is None else since):
        raise bad_input("after", "This cursor is ahead of the stream: no such event has happened.")
    telemetry.RESUMES.inc()
    return Feed(topic, seq, admit, gated)


async def task_events(ctx: Context, project_id: object, after: str | None) -> Feed:
    viewer = ctx.require_viewer()
    project = await access.subscribed_project(viewer, project_id)
    return await _feed(
        topics.project(project.id),
        after,
        lambda message: _task_admit(viewer, project.id, message),
        gated=frozenset({MEMBER_REMOVED}),
    )


def _task_admit(viewer: User, project_id: int, message: EventMessage) -> bool:
    if message.type != MEMBER_REMOVED:
        return True
    if message.payload["userId"] == viewer.id and not access.is_admin(viewer):
        raise not_found("Project", project_id)  # removed: the stream ends at this event
    return False  # membership changes are not task events


# Ticket streams need no check per event: who may see a ticket is settled at subscribe time, since
# a ticket never changes its queue or its requester and agents are never removed from a team (a
# role change ends the socket). Their payloads hold nothing the ticket query would not show: the
# ticket, its changes, the actor and comments, which every viewer of the ticket may read.


async def ticket_events(ctx: Context, queue_id: object, after: str | None) -> Feed:
    """Every ticket change of the queue: for its agents and admins, who see all its tickets."""
    queue = await access.agent_queue_for(ctx.require_viewer(), queue_id)
    return await _feed(topics.queue(queue.id), after)


async def ticket_updates(ctx: Context, ticket_id: object, after: str | None) -> Feed:
    """Every change of one ticket: for its requester, its queue's agents and admins."""
    ticket, _ = await access.ticket_for(ctx.require_viewer(), ticket_id)
    return await _feed(topics.ticket(ticket.id), after)


# Access as of now for streams of a user's own topic. What the viewer may see is read at subscribe
# time, after the topic's head (`since`): an event up to it is replayed only if it is about a ticket
# or task the viewer may see now. One after it was authorized when it was written, which is later
# than the read: a notification is made only for those who may see its subject then (notify), read
# and delete events only for notifications the viewer may still see, and an assignment only of an
# agent of the ticket's queue. Access that shrinks later ends the socket (a role change) or stops
# further events (removal from a project: no new notifications).


async def ticket_assignments(ctx: Context, user_id: object, after: str | None) -> Feed:
    viewer = ctx.require_viewer()
    uid = access.parse_id("User", user_id)
    if uid != viewer.id and not access.is_admin(viewer):
        raise forbidden("You may only watch your own ticket assignments.")
    topic = topics.user_tickets(uid)
    if access.is_admin(viewer):
        return await _feed(topic, after)  # admins see every ticket
    since = await head(topic)
    queues = await access.agent_queue_ids(viewer)
    return await _feed(
        topic,
        after,
        lambda message: _assignment_admit(viewer.id, queues, since, message),
        gated=frozenset({ASSIGNED}),
        since=since,
    )


def _assignment_admit(viewer_id: int, queues: frozenset[int], since: int, message: EventMessage) -> bool:
    if message.seq > since:
        return True
    ticket = message.payload["ticket"]
    return ticket["requester_id"] == viewer_id or ticket["queue_id"] in queues


async def notification_events(ctx: Context, after: str | None) -> Feed:
    viewer = ctx.require_viewer()
    topic = topics.user_notifications(viewer.id)
    if access.is_admin(viewer):
        return await _feed(topic, after)  # admins see every task and ticket
    since = await head(topic)
    projects = await access.member_project_ids(viewer)
    queues = await access.agent_queue_ids(viewer)
    return await _feed(
        topic,
        after,
        lambda message: _notification_admit(viewer.id, projects, queues, since, message),
        gated=NOTIFICATION_EVENTS,
        since=since,
    )


def _notification_admit(
    viewer_id: int, projects: frozenset[int], queues: frozenset[int], since: int, message: EventMessage
) -> bool:
    """An event is replayed only if the viewer may see every notification in it (one they may not
    is not shown as read or deleted either: a later list shows how things are)."""
    if message.seq > since:
        return True
    rows = message.payload["notifications"]
    return all(notifications.may_see(viewer_id, projects, queues, row) for row in rows)


async def queue_metrics(
    ctx: Context, queue_id: object
) -> AbstractAsyncContextManager[Watcher[metrics.QueueMetrics]]:
    """A watcher of the queue's figures, shared with every watcher of the queue on this worker."""
    queue = await access.agent_queue_for(ctx.require_viewer(), queue_id)
    return _watch(queue)


def _watch(queue: Queue) -> AbstractAsyncContextManager[Watcher[metrics.QueueMetrics]]:
    return hub().metrics.watch(topics.queue(queue.id), lambda: metrics.compute(queue), metrics.same_figures)


async def admitted(feed: Feed) -> AsyncGenerator[EventMessage, None]:
    """The feed's events for one subscriber, in seq order, exactly once (the per-subscriber path;
    the delivery engine serves sockets through cohorts instead)."""
    async for message in streams.events(hub(), feed.topic, feed.after):
        if feed.admit(message):
            yield message
