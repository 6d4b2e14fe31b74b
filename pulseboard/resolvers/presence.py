"""Presence's rules: who may see and set it (the project's members and admins, as for taskEvents),
and when a viewer's presence ends (their subscription ends, or they are removed from the project).

Presence is tied to a live `presence` subscription: setPresence says what the caller looks at on
every presence subscription they have open for the project, on any worker, and is a no-op
answering false when they have none (subscribe first; the first SNAPSHOT says it is open)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from pulseboard import telemetry
from pulseboard.errors import AppError, bad_input
from pulseboard.models import Task, User
from pulseboard.resolvers import access, live
from pulseboard.resolvers.context import Context
from pulseboard.subscriptions import topics
from pulseboard.subscriptions.hub import Listener
from pulseboard.subscriptions.presence import Inbox, PresenceTable

logger = logging.getLogger("pulseboard.presence")


def table(ctx: Context) -> PresenceTable:
    """This worker's presence table, started on first use."""
    hub = live.hub()
    if hub.presence is None:
        hub.presence = PresenceTable(
            hub.broadcast,
            namespace=hub.namespace,
            ttl=ctx.settings.presence_ttl_seconds,
            publish_timeout=hub.publish_timeout,
        )
        hub.presence.start()
    return hub.presence


async def watch(ctx: Context, project_id: object) -> AbstractAsyncContextManager[Inbox]:
    """The viewer's presence in the project while the block runs, and everyone else's changes."""
    viewer = ctx.require_viewer()
    project = await access.subscribed_project(viewer, project_id)
    return _present(table(ctx), viewer, project.id)


@asynccontextmanager
async def _present(presence: PresenceTable, viewer: User, project_id: int) -> AsyncIterator[Inbox]:
    async with (
        live.hub().listen(topics.project(project_id)) as listener,
        presence.join(project_id, viewer.id) as inbox,
    ):
        guard = asyncio.create_task(_until_removed(viewer, project_id, listener, inbox))
        try:
            yield inbox
        finally:
            guard.cancel()
            await asyncio.gather(guard, return_exceptions=True)


async def _until_removed(viewer: User, project_id: int, listener: Listener, inbox: Inbox) -> None:
    """Ends the inbox with NOT_FOUND when the viewer is removed from the project, as taskEvents
    ends. Membership is read again when the listener could have missed a removal: at first (it
    may have fallen between authorizing and listening) and after every gap."""
    message = None
    while True:
        try:
            if message is None:
                await access.subscribed_project(viewer, project_id)
            else:
                live._task_admit(viewer, project_id, message)  # the rule taskEvents ends by
        except AppError as error:
            inbox.end(error)
            return
        except Exception as error:  # the database: read again at the next gap
            telemetry.log_limited(logger, "presence access", "checking presence access failed: %r", error)
        message = await listener.get()


async def set_presence(ctx: Context, project_id: object, task_id: object | None, editing: bool) -> bool:
    viewer = ctx.require_viewer()
    project = await access.project_for(viewer, project_id)
    if editing and task_id is None:
        raise bad_input("editing", "Say which task is being edited (taskId).")
    task = None if task_id is None else await _task_of(project.id, task_id)
    return await table(ctx).set_state(project.id, viewer.id, task, editing)


async def _task_of(project_id: int, task_id: object) -> int:
    """The id of a task of the project; any other id (another project's, none) is BAD_USER_INPUT."""
    with contextlib.suppress(AppError):
        tid = access.parse_id("Task", task_id)
        if await Task.filter(id=tid, project_id=project_id).exists():
            return tid
    raise bad_input("taskId", "Not a task of this project.")
