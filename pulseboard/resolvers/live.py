"""Subscriptions' rules: who may watch what (checked once at subscribe time), where a stream
resumes, and which events each subscriber may receive (checked per event)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from pulseboard import telemetry
from pulseboard.errors import forbidden, not_found
from pulseboard.models import Queue, User
from pulseboard.resolvers import access, metrics
from pulseboard.resolvers.context import Context
from pulseboard.resolvers.projects import MEMBER_REMOVED
from pulseboard.subscriptions import streams, topics
from pulseboard.subscriptions.encoding import EventMessage, parse_cursor
from pulseboard.subscriptions.hub import Hub, current
from pulseboard.subscriptions.metrics import Watcher


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


def _feed(
    topic: str,
    after: str | None,
    admit: Callable[[EventMessage], bool] = _deliver_all,
    gated: frozenset[str] = frozenset(),
) -> Feed:
    if after is not None:
        telemetry.RESUMES.inc()
    return Feed(topic, None if after is None else parse_cursor(after, topic), admit, gated)


async def task_events(ctx: Context, project_id: object, after: str | None) -> Feed:
    viewer = ctx.require_viewer()
    project = await access.project_for(viewer, project_id)
    return _feed(
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


async def ticket_assignments(ctx: Context, user_id: object, after: str | None) -> Feed:
    viewer = ctx.require_viewer()
    uid = access.parse_id("User", user_id)
    if uid != viewer.id and not access.is_admin(viewer):
        raise forbidden("You may only watch your own ticket assignments.")
    return _feed(topics.user_tickets(uid), after)


async def notification_events(ctx: Context, after: str | None) -> Feed:
    return _feed(topics.user_notifications(ctx.require_viewer().id), after)


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
