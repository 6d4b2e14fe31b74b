"""Due-date reminders: TASK_DUE_SOON to a task's assignee at their lead time before `dueAt`, and
TASK_OVERDUE once when it passes. Both are notifications like any other, so they follow the
assignee's preferences and quiet hours, and reach every channel those allow.

Each task keeps `remind_at`, when its next reminder falls due: `dueAt` minus the assignee's lead
time while it is ahead, then `dueAt` itself, then none. Every write that changes `dueAt`, the
assignee or the status sets it again (`remind_at` below, from tasks._apply and create_task), so
changing or clearing a due date re-arms or cancels its reminders, and a done task has none;
changing one's lead time re-arms one's open tasks. Every worker sweeps the due rows
(pulseboard/reminders): a row is claimed (FOR UPDATE SKIP LOCKED on PostgreSQL; SQLite has one
writer) in the transaction that stores the notification and moves `remind_at` on, so each
reminder is sent once, whichever worker takes it, and none is lost to a restart: the rows wait."""

from __future__ import annotations

import datetime as dt

from tortoise import timezone
from tortoise.backends.base.client import BaseDBAsyncClient

from pulseboard.models import NotificationPreferences, NotificationType, Task, TaskStatus
from pulseboard.resolvers import notifications
from pulseboard.resolvers.events import transaction

BATCH = 100  # rows per sweep transaction; a sweep goes on until none is due
# The columns whose change moves a task's reminders.
ARMING = frozenset({"due_at", "assignee_id", "status"})


def next_reminder(due_at: dt.datetime, lead: dt.timedelta, now: dt.datetime) -> dt.datetime:
    """When an open, assigned task's next reminder falls due: the due-soon one (already due if
    the lead time has begun), then, once the due date is past, the overdue one at it."""
    return due_at if now >= due_at else due_at - lead


async def lead_time(conn: BaseDBAsyncClient, user_id: int) -> dt.timedelta:
    prefs = await NotificationPreferences.filter(user_id=user_id).using_db(conn).first()
    return dt.timedelta(minutes=(prefs or NotificationPreferences()).due_reminder_minutes)


async def remind_at(
    conn: BaseDBAsyncClient, *, due_at: dt.datetime | None, assignee_id: int | None, status: TaskStatus
) -> dt.datetime | None:
    """`remind_at` of a task in this state, as of now (the assignee's lead time is read only when
    there is a reminder to time)."""
    if due_at is None or assignee_id is None or status == TaskStatus.DONE:
        return None
    return next_reminder(due_at, await lead_time(conn, assignee_id), timezone.now())


async def rearm(conn: BaseDBAsyncClient, user_id: int, lead: dt.timedelta) -> None:
    """The user's lead time changed: their open tasks' reminders move with it (one that was sent
    already for its due date is not sent again; a due date passed keeps only the overdue one)."""
    now = timezone.now()
    pending = Task.filter(assignee_id=user_id, remind_at__isnull=False).using_db(conn)
    for task in await pending.only("id", "due_at", "remind_at"):
        if task.due_at is None or task.remind_at is None or task.remind_at >= task.due_at:
            continue  # the due-soon reminder went out already: only the overdue one is left
        moved = next_reminder(task.due_at, lead, now)
        await Task.filter(id=task.id).using_db(conn).update(remind_at=moved)


async def sweep(now: dt.datetime | None = None) -> int:
    """Sends every reminder due by `now`, a batch per transaction; how many it sent."""
    sent = 0
    while (count := await _sweep_batch(now or timezone.now())) > 0:
        sent += count
    return sent


async def _sweep_batch(now: dt.datetime) -> int:
    async with transaction(None) as tx:
        due = (
            Task.filter(remind_at__lte=now)
            .order_by("remind_at")
            .limit(BATCH)
            .select_for_update(skip_locked=True)
            .using_db(tx.conn)
        )
        tasks = await due
        for task in tasks:
            assert task.due_at is not None and task.assignee_id is not None  # remind_at says so
            overdue = now >= task.due_at
            # Late (the server was down through both): only the overdue one still says anything.
            await notifications.notify(
                tx,
                recipients=[task.assignee_id],
                type=NotificationType.TASK_OVERDUE if overdue else NotificationType.TASK_DUE_SOON,
                title=f"{task.title} is overdue" if overdue else f"{task.title} is due soon",
                task=task,
            )
            following = None if overdue else task.due_at
            await Task.filter(id=task.id).using_db(tx.conn).update(remind_at=following)
    return len(tasks)
