"""Tasks on a project's board: columns by status, dense positions, versions and events."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from tortoise import timezone
from tortoise.expressions import F, Q
from tortoise.queryset import QuerySet

from pulseboard.errors import AppError, bad_input, conflict, not_found
from pulseboard.models import NotificationType, Project, Task, TaskComment, TaskPriority, TaskStatus, urgency
from pulseboard.resolvers import access, notifications, reminders
from pulseboard.resolvers.context import Context
from pulseboard.resolvers.events import Transaction, change, snapshot, transaction, update_versioned
from pulseboard.resolvers.pagination import Page, decode_cursor, encode_cursor, page_args, page_of, paginate
from pulseboard.resolvers.validation import BODY_MAX, in_utc, int_range, searched, text
from pulseboard.subscriptions import topics

BOARD_ORDER = ["status", "position", "id"]


class TaskOrder(StrEnum):
    BOARD = "BOARD"  # by column (status), then position: the board as it is drawn
    NEWEST = "NEWEST"  # most recently created first
    OLDEST = "OLDEST"
    PRIORITY = "PRIORITY"  # most urgent first, oldest first within a priority


# Each order's key, as pagination reads it (an index per order: see models.projects.Task).
ORDERS = {
    TaskOrder.BOARD: BOARD_ORDER,
    TaskOrder.NEWEST: ["-id"],
    TaskOrder.OLDEST: ["id"],
    TaskOrder.PRIORITY: ["urgency", "id"],
}
# GraphQL names of the fields updateTask may change, and their columns.
UPDATABLE = {
    "title": "title",
    "description": "description",
    "priority": "priority",
    "progress": "progress",
    "dueAt": "due_at",
}


async def task(ctx: Context, task_id: object) -> Task:
    return await access.task_for(ctx.require_viewer(), task_id)


async def tasks(
    ctx: Context,
    *,
    project_id: object,
    status: TaskStatus | None,
    assignee_id: object | None,
    first: int | None,
    after: str | None,
    with_count: bool = False,
    last: int | None = None,
    before: str | None = None,
    order_by: TaskOrder = TaskOrder.BOARD,
    search: str | None = None,
) -> Page[Task]:
    """The page reads only the tasks of a project the viewer may see, so when it has tasks the
    project is visible: only an empty page needs to tell a project out of sight (NOT_FOUND).
    `search` keeps the tasks whose title or description contains it, ignoring case."""
    viewer = ctx.require_viewer()
    pid = access.parse_id("Project", project_id)
    query = Task.filter(access.visible_tasks(viewer), project_id=pid)
    if status is not None:
        query = query.filter(status=status)
    if assignee_id is not None:
        query = query.filter(assignee_id=access.parse_id("User", assignee_id))
    if words := searched(search):
        query = query.filter(Q(title__icontains=words) | Q(description__icontains=words))
    if order_by == TaskOrder.BOARD:
        if after is not None:
            after = await _reanchored(pid, after)
        if before is not None:
            before = await _reanchored(pid, before, "before")
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
    if not page.items:
        await access.project_for(viewer, pid)
    return page


async def _reanchored(project_id: int, cursor: str, field: str = "after") -> str:
    """The cursor (`field`: after or before) keyed to where its task is now, if it is still in
    that column. Positions shift when tasks above are deleted or moved, and as ids need not
    follow positions, the old key could then skip a task (or, before, take one from below)."""
    status, _, task_id = decode_cursor(cursor, len(BOARD_ORDER), field)
    if status not in {s.value for s in TaskStatus}:
        raise bad_input(field, "Invalid cursor.")
    if not 0 < task_id < 2**31:
        return cursor
    current = await Task.get_or_none(id=task_id, project_id=project_id)
    if current is None or int(current.status) != status:
        return cursor
    return encode_cursor([int(current.status), current.position, current.id])


async def comments(
    ctx: Context,
    task: Task,
    *,
    first: int | None,
    after: str | None,
    last: int | None = None,
    before: str | None = None,
) -> Page[TaskComment]:
    """Through loaders: a list of tasks reads all their pages and counts in one query each."""
    args = page_args(ctx.settings, first, after, arity=1, last=last, before=before)
    rows = await ctx.loaders.task_comments.load((task.id, args))
    return page_of(rows, order=["id"], args=args, count=lambda: ctx.loaders.task_comment_counts.load(task.id))


async def _check_assignee(project_id: int, assignee_id: object | None) -> int | None:
    if assignee_id is None:
        return None
    # Only a membership row counts: admins see every project but are assignable only where they
    # were added. Nonexistent users and non-members get the same answer (no existence oracle).
    try:
        user_id = access.parse_id("User", assignee_id)
    except AppError:  # a malformed id names no user, so no member either
        user_id = None
    if user_id is None or not await access.has_membership(user_id, project_id):
        raise bad_input("assigneeId", "The assignee must be a member of the project.")
    return user_id


async def _lock_board(tx: Transaction, project_id: int) -> None:
    # Serialises writers of one board so positions stay dense (SQLite has one writer anyway).
    await Project.filter(id=project_id).using_db(tx.conn).select_for_update().first()


async def _writable(ctx: Context, tx: Transaction, task_id: object, expected_version: int | None) -> Task:
    """The task, locked for change, after the access and version checks."""
    found = await access.task_for(ctx.require_viewer(), task_id)
    await _lock_board(tx, found.project_id)
    current = await Task.filter(id=found.id).using_db(tx.conn).get_or_none()
    if current is None:  # deleted while we waited for the lock
        raise not_found("Task", task_id)
    if expected_version is not None and current.version != expected_version:
        raise conflict("Task", task_id, current.version)
    return current


async def _apply(tx: Transaction, task: Task, **values: Any) -> Task:
    """Conditional update: only the version we read may be changed, never a lost write."""
    if "priority" in values:
        values["urgency"] = urgency(values["priority"])
    if reminders.ARMING & values.keys():  # a new due date, assignee or column: reminders move
        state = {name: values.get(name, getattr(task, name)) for name in reminders.ARMING}
        values["remind_at"] = await reminders.remind_at(tx.conn, **state)
    updated = await update_versioned(tx.conn, task, **values)
    if updated is None:
        fresh = await Task.filter(id=task.id).using_db(tx.conn).get()
        raise conflict("Task", task.id, fresh.version)
    return updated


def _emit(tx: Transaction, type: str, task: Task, changes: list[dict[str, Any]], **extra: Any) -> None:
    payload = {"task": snapshot(task), "changes": changes, **extra}
    tx.emit(topics.project(task.project_id), type, payload)


def _changed(changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Only the entries whose value did change."""
    return [c for c in changes if c["from"] != c["to"]]


async def _column_size(tx: Transaction, project_id: int, status: TaskStatus) -> int:
    return await Task.filter(project_id=project_id, status=status).using_db(tx.conn).count()


@dataclass
class _Shifts:
    """The other tasks a change slides along their columns, for its event's `displaced`: where
    each was before the change and where it is now. A task shifted down then up again (a move
    within its column) ends where it was, and is not displaced."""

    before: dict[int, tuple[TaskStatus, int]] = field(default_factory=dict)
    now: dict[int, tuple[TaskStatus, int]] = field(default_factory=dict)

    async def slide(self, tx: Transaction, column: QuerySet[Task], status: TaskStatus, by: int) -> None:
        """Shifts the tasks of `column` (a query of one status column) by `by` places. Read and
        changed under the board lock, so the rows read are exactly the rows shifted."""
        rows = await column.using_db(tx.conn).values_list("id", "position")
        if not rows:
            return
        await column.using_db(tx.conn).update(position=F("position") + by)
        for task_id, position in rows:
            self.before.setdefault(task_id, (status, position))
            self.now[task_id] = (status, position + by)

    def displaced(self) -> list[dict[str, int]]:
        """Compact rows (ints only: events are logged and published), in board order."""
        moved = sorted((s, p, i) for i, (s, p) in self.now.items() if self.before[i] != (s, p))
        return [{"id": i, "status": int(s), "position": p} for s, p, i in moved]


async def _close_gap(tx: Transaction, task: Task, shifts: _Shifts) -> None:
    below = Task.filter(project_id=task.project_id, status=task.status, position__gt=task.position)
    await shifts.slide(tx, below, task.status, -1)


async def create_task(
    ctx: Context,
    *,
    project_id: object,
    title: str,
    description: str | None,
    status: TaskStatus | None,
    priority: TaskPriority | None,
    assignee_id: object | None,
    due_at: dt.datetime | None,
) -> Task:
    viewer = ctx.require_viewer()
    project = await access.project_for(viewer, project_id)
    title = text("title", title)
    description = text("description", description or "", max_length=BODY_MAX, required=False, multiline=True)
    due_at = in_utc("dueAt", due_at)
    status = status or TaskStatus.TODO
    async with transaction(viewer.id) as tx:
        await _lock_board(tx, project.id)
        # Checked under the lock, as removing a member unassigns them under it: none can be left
        # the assignee of a task made while they were being removed.
        assignee = await _check_assignee(project.id, assignee_id)
        created = await Task.create(
            project_id=project.id,
            title=title,
            description=description,
            status=status,
            position=await _column_size(tx, project.id, status),
            priority=priority or TaskPriority.MEDIUM,
            urgency=urgency(priority or TaskPriority.MEDIUM),
            assignee_id=assignee,
            due_at=due_at,
            created_by_id=viewer.id,
            completed_at=timezone.now() if status == TaskStatus.DONE else None,
            progress=100 if status == TaskStatus.DONE else 0,
            remind_at=await reminders.remind_at(tx.conn, due_at=due_at, assignee_id=assignee, status=status),
            using_db=tx.conn,
        )
        _emit(tx, "CREATED", created, [])
        if assignee is not None:
            await _notify_assignee(tx, created)
    return created


async def update_task(
    ctx: Context, *, task_id: object, values: Mapping[str, Any], expected_version: int | None
) -> Task:
    """`values` holds only the fields the client sent (GraphQL names; null clears dueAt)."""
    checked = _checked_update(values)
    async with transaction(ctx.require_viewer().id) as tx:
        current = await _writable(ctx, tx, task_id, expected_version)
        changes = [
            change(name, getattr(current, UPDATABLE[name]), value)
            for name, value in checked.items()
            if getattr(current, UPDATABLE[name]) != value
        ]
        if not changes:
            return current
        updated = await _apply(tx, current, **{UPDATABLE[n]: v for n, v in checked.items()})
        _emit(tx, "UPDATED", updated, changes)
    return updated


def _checked_update(values: Mapping[str, Any]) -> dict[str, Any]:
    checked = dict(values)
    for name in ("title", "priority", "progress"):
        if name in checked and checked[name] is None:
            raise bad_input(name, f"{name} cannot be null.")
    if "title" in checked:
        checked["title"] = text("title", checked["title"])
    if "description" in checked:
        checked["description"] = text(
            "description", checked["description"] or "", max_length=BODY_MAX, required=False, multiline=True
        )
    if "dueAt" in checked:
        checked["dueAt"] = in_utc("dueAt", checked["dueAt"])
    if "progress" in checked:
        int_range("progress", checked["progress"], 0, 100)
    return checked


async def move_task(
    ctx: Context,
    *,
    task_id: object,
    status: TaskStatus,
    position: int,
    expected_version: int | None,
) -> Task:
    if position < 0:
        raise bad_input("position", "position must not be negative.")
    async with transaction(ctx.require_viewer().id) as tx:
        current = await _writable(ctx, tx, task_id, expected_version)
        shifts = _Shifts()
        await _close_gap(tx, current, shifts)
        others = Task.filter(project_id=current.project_id, status=status).exclude(id=current.id)
        target = min(position, await others.using_db(tx.conn).count())
        await shifts.slide(tx, others.filter(position__gte=target), status, +1)
        values: dict[str, Any] = {"status": status, "position": target}
        if status != current.status:
            values["completed_at"] = timezone.now() if status == TaskStatus.DONE else None
        if current.status == TaskStatus.DONE and status != TaskStatus.DONE:
            values["progress"] = 0  # reopened: the work starts again
        elif status == TaskStatus.DONE and current.status != TaskStatus.DONE:
            values["progress"] = 100  # done by a move, as by completeTask
        moved = await _apply(tx, current, **values)
        changes = [
            change("status", current.status, status),
            change("position", current.position, target),
            change("progress", current.progress, moved.progress),
        ]
        _emit(tx, "MOVED", moved, _changed(changes), displaced=shifts.displaced())
        if status == TaskStatus.DONE and current.status != TaskStatus.DONE:
            await _notify_completed(tx, moved)
    return moved


async def assign_task(
    ctx: Context, *, task_id: object, assignee_id: object | None, expected_version: int | None
) -> Task:
    async with transaction(ctx.require_viewer().id) as tx:
        current = await _writable(ctx, tx, task_id, expected_version)
        assignee = await _check_assignee(current.project_id, assignee_id)
        if assignee == current.assignee_id:
            return current
        assigned = await _apply(tx, current, assignee_id=assignee)
        _emit(tx, "ASSIGNED", assigned, [change("assigneeId", current.assignee_id, assignee)])
        if assignee is not None:
            await _notify_assignee(tx, assigned)
    return assigned


async def complete_task(ctx: Context, *, task_id: object, expected_version: int | None) -> Task:
    async with transaction(ctx.require_viewer().id) as tx:
        current = await _writable(ctx, tx, task_id, expected_version)
        if current.status == TaskStatus.DONE:
            return current
        shifts = _Shifts()
        await _close_gap(tx, current, shifts)
        completed = await _apply(
            tx,
            current,
            status=TaskStatus.DONE,
            position=await _column_size(tx, current.project_id, TaskStatus.DONE),
            progress=100,
            completed_at=timezone.now(),
        )
        changes = [
            change("status", current.status, TaskStatus.DONE),
            change("position", current.position, completed.position),
            change("progress", current.progress, 100),
        ]
        _emit(tx, "COMPLETED", completed, _changed(changes), displaced=shifts.displaced())
        await _notify_completed(tx, completed)
    return completed


async def delete_task(ctx: Context, *, task_id: object, expected_version: int | None) -> Task:
    async with transaction(ctx.require_viewer().id) as tx:
        current = await _writable(ctx, tx, task_id, expected_version)
        deleted = await Task.filter(id=current.id, version=current.version).using_db(tx.conn).delete()
        if deleted == 0:
            raise conflict("Task", task_id, current.version)
        shifts = _Shifts()
        await _close_gap(tx, current, shifts)
        _emit(tx, "DELETED", current, [], displaced=shifts.displaced())
    return current


async def unassign_member(tx: Transaction, project_id: int, user_id: int) -> list[Task]:
    """Leaves none of the project's tasks assigned to `user_id` (who is leaving it), each with a
    new version and its ASSIGNED event, inside the caller's transaction. The board is locked
    first, so no task can be assigned to them meanwhile."""
    await _lock_board(tx, project_id)
    theirs = await (
        Task.filter(project_id=project_id, assignee_id=user_id).using_db(tx.conn).order_by(*BOARD_ORDER)
    )
    unassigned = []
    for current in theirs:
        updated = await _apply(tx, current, assignee_id=None)
        _emit(tx, "ASSIGNED", updated, [change("assigneeId", current.assignee_id, None)])
        unassigned.append(updated)
    return unassigned


async def add_comment(ctx: Context, *, task_id: object, body: str) -> TaskComment:
    viewer = ctx.require_viewer()
    body = text("body", body, max_length=BODY_MAX, multiline=True)
    async with transaction(viewer.id) as tx:
        found = await access.task_for(viewer, task_id)
        comment = await TaskComment.create(task_id=found.id, author_id=viewer.id, body=body, using_db=tx.conn)
        _emit(tx, "COMMENTED", found, [], comment=snapshot(comment))
        await notifications.notify(
            tx,
            recipients=[found.assignee_id, found.created_by_id],
            type=NotificationType.TASK_COMMENTED,
            title=f"New comment on {found.title}",
            body=body[:500],
            task=found,
        )
    return comment


async def _notify_assignee(tx: Transaction, task: Task) -> None:
    await notifications.notify(
        tx,
        recipients=[task.assignee_id],
        type=NotificationType.TASK_ASSIGNED,
        title=f"You were assigned {task.title}",
        task=task,
    )


async def _notify_completed(tx: Transaction, task: Task) -> None:
    await notifications.notify(
        tx,
        recipients=[task.assignee_id, task.created_by_id],
        type=NotificationType.TASK_COMPLETED,
        title=f"{task.title} was completed",
        task=task,
    )
