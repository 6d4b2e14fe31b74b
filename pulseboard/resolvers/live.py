"""Subscriptions' rules: who may watch what, checked once at subscribe time, and where to resume."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing

from pulseboard import telemetry
from pulseboard.errors import forbidden, not_found
from pulseboard.models import Queue, User
from pulseboard.resolvers import access, metrics
from pulseboard.resolvers.context import Context
from pulseboard.resolvers.projects import MEMBER_REMOVED
from pulseboard.subscriptions import streams, topics
from pulseboard.subscriptions.encoding import EventMessage, parse_cursor
from pulseboard.subscriptions.hub import Hub, current


def _hub() -> Hub:
    hub = current()
    if hub is None:
        raise RuntimeError("no hub: subscriptions need the app's lifespan to be running")
    return hub


def _stream(topic: str, after: str | None) -> AsyncIterator[EventMessage]:
    if after is not None:
        telemetry.RESUMES.inc()
    return streams.events(_hub(), topic, None if after is None else parse_cursor(after, topic))


async def task_events(ctx: Context, project_id: object, after: str | None) -> AsyncIterator[EventMessage]:
    viewer = ctx.require_viewer()
    project = await access.project_for(viewer, project_id)
    return _task_events(viewer, project.id, _stream(topics.project(project.id), after))


async def _task_events(
    viewer: User, project_id: int, stream: AsyncIterator[EventMessage]
) -> AsyncIterator[EventMessage]:
    async with aclosing(stream):  # type: ignore[type-var]
        async for message in stream:
            if message.type == MEMBER_REMOVED:
                if message.payload["userId"] == viewer.id and not access.is_admin(viewer):
                    raise not_found("Project", project_id)
                continue
            yield message


async def ticket_assignments(ctx: Context, user_id: object, after: str | None) -> AsyncIterator[EventMessage]:
    viewer = ctx.require_viewer()
    uid = access.parse_id("User", user_id)
    if uid != viewer.id and not access.is_admin(viewer):
        raise forbidden("You may only watch your own ticket assignments.")
    return _stream(topics.user_tickets(uid), after)


async def notification_events(ctx: Context, after: str | None) -> AsyncIterator[EventMessage]:
    return _stream(topics.user_notifications(ctx.require_viewer().id), after)


async def queue_metrics(ctx: Context, queue_id: object) -> AsyncIterator[metrics.QueueMetrics]:
    queue = await access.agent_queue_for(ctx.require_viewer(), queue_id)
    return _metrics(queue)


async def _metrics(queue: Queue) -> AsyncIterator[metrics.QueueMetrics]:
    watch = _hub().metrics.watch(topics.queue(queue.id), lambda: metrics.compute(queue), metrics.same_figures)
    async with watch as watcher:
        while True:
            yield await watcher.next()
