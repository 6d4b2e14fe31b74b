"""Stored notifications: created for the people an event concerns who may see what it is about,
delivered on the channels their preferences and quiet hours allow (decided once, at creation,
and stored with the row); listed, counted, read and streamed only while the viewer still may.

A notification is stored when any channel takes it. Only in-app ones are listed and counted;
those for the browser or in-app are announced on the user's topic (the `notifications`
subscription, where a browser-only one arrives without ever being listed); e-mailed ones get an
outbox row in the same transaction (resolvers/outbox, sent by pulseboard/mail).

Access is checked as of now. At creation, only recipients who may see the task (members of its
project) or the ticket (its requester, agents of its queue's team, admins) get one. At delivery,
the list, the count, marking and deleting see only notifications whose task or ticket the viewer
may see now (in SQL). Every event on a user's notifications topic carries, per notification, the
`subject` its access is decided by (project; queue and requester), so a replay can check it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from tortoise import timezone
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.expressions import Q, Subquery
from tortoise.queryset import QuerySet

from pulseboard import mail
from pulseboard.errors import bad_input, not_found
from pulseboard.models import (
    Notification,
    NotificationChannel,
    NotificationPreferences,
    NotificationType,
    ProjectMember,
    Role,
    Task,
    TeamMember,
    Ticket,
    User,
)
from pulseboard.resolvers import access, outbox, preferences
from pulseboard.resolvers.access import parse_id
from pulseboard.resolvers.context import Context
from pulseboard.resolvers.events import Transaction, snapshot, transaction
from pulseboard.resolvers.pagination import Page, paginate
from pulseboard.subscriptions import topics

MARK_MAX = 100  # ids per markNotificationsRead; markAllNotificationsRead covers the rest


@dataclass(frozen=True)
class Delivery:
    """Where one notification goes. Quiet hours silence the browser (and its sound) and hold the
    e-mail until they end; in-app notifications are stored whatever the hour."""

    in_app: bool
    browser: bool
    email: bool
    sound: bool
    quiet_until: dt.datetime | None  # the end of the quiet hours it came in, if it did

    @property
    def stored(self) -> bool:
        return self.in_app or self.browser or self.email

    @property
    def announced(self) -> bool:
        """On the user's topic: what the in-app list and browser pop-ups both listen to."""
        return self.in_app or self.browser


def decide(
    prefs: NotificationPreferences | None, type: NotificationType, now: dt.datetime, *, email: bool
) -> Delivery:
    """The channels a user's preferences (none stored: the defaults, all on) let `type` through
    at `now`. `email`: whether e-mail can reach them at all (a sender is configured, they have an
    address). The sound goes with the browser pop-up, so never in quiet hours either."""
    prefs = prefs or NotificationPreferences()
    on = preferences.channels_for(prefs, type)
    if not prefs.enabled:
        on = dict.fromkeys(on, False)
    quiet = preferences.quiet_hours(prefs)
    until = quiet.until(now) if quiet else None
    browser = on[NotificationChannel.BROWSER] and until is None
    return Delivery(
        in_app=on[NotificationChannel.IN_APP],
        browser=browser,
        email=on[NotificationChannel.EMAIL] and email,
        sound=prefs.sound and browser,
        quiet_until=until,
    )


Subject = dict[str, Any]


def subject_of_task(task: Task) -> Subject:
    return {"project_id": task.project_id}


def subject_of_ticket(ticket: Ticket) -> Subject:
    # A ticket never changes queue or requester, and a queue never changes team.
    return {"queue_id": ticket.queue_id, "requester_id": ticket.requester_id}


def payload_row(notification: Notification, subject: Subject) -> dict[str, Any]:
    """A notification as events carry it: its row and what decides who may see it (`subject`,
    read by live.notification_events; not part of the GraphQL type)."""
    return {**snapshot(notification), "subject": subject}


def may_see(viewer_id: int, projects: frozenset[int], queues: frozenset[int], row: dict[str, Any]) -> bool:
    """Whether a non-admin who is a member of `projects` and an agent of `queues` may see the
    notification `row` (as payload_row made it). Without its subject: no (it cannot be told)."""
    subject = row.get("subject") or {}
    if row.get("task_id") is not None and subject.get("project_id") not in projects:
        return False
    if row.get("ticket_id") is not None:
        return subject.get("requester_id") == viewer_id or subject.get("queue_id") in queues
    return True


async def _audience(
    conn: BaseDBAsyncClient, users: list[int], task: Task | None, ticket: Ticket | None
) -> set[int]:
    """Those of `users` who may see the notification's subject now (one query). A task's are the
    members of its project: admins see every project but hear of a task only as members, as only
    members can be assigned one. A ticket's are its requester, its queue's agents and admins."""
    if task is not None:
        members = ProjectMember.filter(project_id=task.project_id, user_id__in=users)
        return set(await members.using_db(conn).values_list("user_id", flat=True))  # type: ignore[arg-type]
    if ticket is not None:
        agents = TeamMember.filter(team__queues__id=ticket.queue_id).values("user_id")
        allowed = User.filter(id__in=users).filter(
            Q(
                Q(role=Role.ADMIN),
                Q(id=ticket.requester_id),
                Q(role=Role.AGENT, id__in=Subquery(agents)),
                join_type=Q.OR,
            )
        )
        return set(await allowed.using_db(conn).values_list("id", flat=True))  # type: ignore[arg-type]
    return set(users)


async def notify(
    tx: Transaction,
    *,
    recipients: Iterable[int | None],
    type: NotificationType,
    title: str,
    body: str = "",
    task: Task | None = None,
    ticket: Ticket | None = None,
) -> list[Notification]:
    """Store a notification about `task` or `ticket` for each recipient but the actor who may see
    it now, on the channels their preferences allow now (three queries for all recipients; then
    per recipient an insert, and the announcement's unread count and the e-mail as decided)."""
    users = sorted({r for r in recipients if r is not None and r != tx.actor_id})
    if not users:
        return []
    allowed = await _audience(tx.conn, users, task, ticket)
    users = [u for u in users if u in allowed]
    if not users:
        return []
    subject = subject_of_task(task) if task else subject_of_ticket(ticket) if ticket else {}
    people = await User.filter(id__in=users).order_by("id").using_db(tx.conn)
    prefs = {p.user_id: p for p in await NotificationPreferences.filter(user_id__in=users).using_db(tx.conn)}
    sender, now = mail.current(), timezone.now()
    created = []
    for person in people:
        delivery = decide(prefs.get(person.id), type, now, email=sender is not None and bool(person.email))
        if not delivery.stored:
            continue
        notification = await Notification.create(
            user_id=person.id,
            type=type,
            title=title[:300],
            body=body,
            task_id=task.id if task else None,
            ticket_id=ticket.id if ticket else None,
            in_app=delivery.in_app,
            browser=delivery.browser,
            email=delivery.email,
            sound=delivery.sound,
            quiet=delivery.quiet_until is not None,
            using_db=tx.conn,
        )
        if sender is not None and delivery.email:
            due = delivery.quiet_until or now
            await outbox.enqueue(
                tx.conn, notification, recipient=person.email, due=due, public_url=sender.public_url
            )
        if delivery.announced:
            await _announce(tx, person, "CREATED", [payload_row(notification, subject)])
        created.append(notification)
    return created


async def _announce(tx: Transaction, viewer: User, type: str, rows: list[dict[str, Any]]) -> None:
    """An event on the viewer's topic with their unread count after the change, counted here
    once rather than by every delivery of the event."""
    unread = await _unread(viewer).using_db(tx.conn).count()
    tx.emit(topics.user_notifications(viewer.id), type, {"notifications": rows, "unreadCount": unread})


def visible(viewer: User) -> QuerySet[Notification]:
    """The viewer's in-app notifications whose task or ticket they may see now (one statement; a
    notification about a task that no longer exists is not shown: who may see it cannot be told).
    Those delivered to the browser or by e-mail only are not the list's."""
    return Notification.filter(
        Q(task_id__isnull=True) | Q(task_id__in=access.visible_task_ids(viewer)),
        Q(ticket_id__isnull=True) | Q(ticket_id__in=access.visible_ticket_ids(viewer)),
        user_id=viewer.id,
        in_app=True,
    )


def _unread(viewer: User) -> QuerySet[Notification]:
    return visible(viewer).filter(read_at__isnull=True)


async def notifications(
    ctx: Context,
    *,
    first: int | None,
    after: str | None,
    unread_only: bool,
    with_count: bool = False,
    last: int | None = None,
    before: str | None = None,
) -> Page[Notification]:
    viewer = ctx.require_viewer()
    query = visible(viewer)
    if unread_only:
        query = query.filter(read_at__isnull=True)
    return await paginate(
        query,
        order=["-id"],
        first=first,
        after=after,
        last=last,
        before=before,
        settings=ctx.settings,
        with_count=with_count,
    )


async def unread_count(ctx: Context) -> int:
    return await _unread(ctx.require_viewer()).count()


async def _subjects(conn: BaseDBAsyncClient, rows: Sequence[Notification]) -> dict[int, Subject]:
    """Each notification's subject by its id, read from its task or ticket (two queries at most)."""
    task_ids = {n.task_id for n in rows if n.task_id is not None}
    ticket_ids = {n.ticket_id for n in rows if n.ticket_id is not None}
    projects: dict[int, int] = {}
    tickets: dict[int, Subject] = {}
    if task_ids:
        found = await Task.filter(id__in=task_ids).using_db(conn).values_list("id", "project_id")
        projects = {tid: pid for tid, pid in found}  # type: ignore[misc]
    if ticket_ids:
        found_tickets = Ticket.filter(id__in=ticket_ids).using_db(conn)
        for t in await found_tickets.values("id", "queue_id", "requester_id"):
            tickets[t["id"]] = {"queue_id": t["queue_id"], "requester_id": t["requester_id"]}
    subjects: dict[int, Subject] = {}
    for n in rows:
        subject: Subject = {}
        if n.task_id is not None and n.task_id in projects:
            subject["project_id"] = projects[n.task_id]
        if n.ticket_id is not None:
            subject.update(tickets.get(n.ticket_id, {}))
        subjects[n.id] = subject
    return subjects


async def mark_read(ctx: Context, *, ids: Sequence[object]) -> list[Notification]:
    """Marks the viewer's notifications read; any id that is not theirs, or is about what they may
    no longer see, is NOT_FOUND (all or none)."""
    viewer = ctx.require_viewer()
    if len(ids) > MARK_MAX:
        raise bad_input("ids", f"At most {MARK_MAX} notifications at once.")
    wanted = [parse_id("Notification", i) for i in ids]
    async with transaction(viewer.id) as tx:
        rows = {n.id: n for n in await visible(viewer).filter(id__in=wanted).using_db(tx.conn)}
        missing = [i for i in wanted if i not in rows]
        if missing:
            raise not_found("Notification", missing[0])
        await _mark(tx, viewer, [n for n in rows.values() if n.read_at is None])
    return [rows[i] for i in dict.fromkeys(wanted)]


async def mark_all_read(ctx: Context) -> int:
    """Marks read those the viewer may still see (the others are not theirs to know of)."""
    viewer = ctx.require_viewer()
    async with transaction(viewer.id) as tx:
        unread = await _unread(viewer).using_db(tx.conn)
        await _mark(tx, viewer, unread)
    return len(unread)


async def _mark(tx: Transaction, viewer: User, unread: list[Notification]) -> None:
    if not unread:
        return
    now = timezone.now()
    await Notification.filter(id__in=[n.id for n in unread]).using_db(tx.conn).update(read_at=now)
    for notification in unread:
        notification.read_at = now
    subjects = await _subjects(tx.conn, unread)
    await _announce(tx, viewer, "READ", [payload_row(n, subjects[n.id]) for n in unread])


async def delete_notification(ctx: Context, *, notification_id: object) -> Notification:
    viewer = ctx.require_viewer()
    nid = parse_id("Notification", notification_id)
    async with transaction(viewer.id) as tx:
        notification = await visible(viewer).filter(id=nid).using_db(tx.conn).first()
        if notification is None:
            raise not_found("Notification", notification_id)
        subjects = await _subjects(tx.conn, [notification])
        await notification.delete(using_db=tx.conn)
        await _announce(tx, viewer, "DELETED", [payload_row(notification, subjects[notification.id])])
    return notification
