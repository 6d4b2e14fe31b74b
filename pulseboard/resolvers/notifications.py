"""Stored notifications: created for the people an event concerns, as their preferences allow."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tortoise import timezone

from pulseboard.errors import bad_input, not_found
from pulseboard.models import Notification, NotificationChannel, NotificationPreferences, NotificationType
from pulseboard.resolvers.access import parse_id
from pulseboard.resolvers.context import Context
from pulseboard.resolvers.events import Transaction, snapshot, transaction
from pulseboard.resolvers.pagination import Page, paginate
from pulseboard.subscriptions import topics

MARK_MAX = 100  # ids per markNotificationsRead; markAllNotificationsRead covers the rest


def wants(
    prefs: NotificationPreferences | None, type: NotificationType, channel: NotificationChannel
) -> bool:
    """Whether a user's preferences let `type` through on `channel` (no preferences: all on)."""
    if prefs is None:
        return True
    return prefs.enabled and prefs.channels.get(type.value, {}).get(channel.value, True)


async def notify(
    tx: Transaction,
    *,
    recipients: Iterable[int | None],
    type: NotificationType,
    title: str,
    body: str = "",
    task_id: int | None = None,
    ticket_id: int | None = None,
) -> list[Notification]:
    """Store an in-app notification for each recipient but the actor, where preferences allow."""
    users = sorted({r for r in recipients if r is not None and r != tx.actor_id})
    if not users:
        return []
    prefs = {p.user_id: p for p in await NotificationPreferences.filter(user_id__in=users).using_db(tx.conn)}
    created = []
    for user_id in users:
        if not wants(prefs.get(user_id), type, NotificationChannel.IN_APP):
            continue
        notification = await Notification.create(
            user_id=user_id,
            type=type,
            title=title[:300],
            body=body,
            task_id=task_id,
            ticket_id=ticket_id,
            using_db=tx.conn,
        )
        tx.emit(topics.user_notifications(user_id), "CREATED", {"notifications": [snapshot(notification)]})
        created.append(notification)
    return created


async def notifications(
    ctx: Context, *, first: int | None, after: str | None, unread_only: bool
) -> Page[Notification]:
    viewer = ctx.require_viewer()
    query = Notification.filter(user_id=viewer.id)
    if unread_only:
        query = query.filter(read_at__isnull=True)
    return await paginate(query, order=["-id"], first=first, after=after, settings=ctx.settings)


async def unread_count(ctx: Context) -> int:
    viewer = ctx.require_viewer()
    return await Notification.filter(user_id=viewer.id, read_at__isnull=True).count()


async def mark_read(ctx: Context, *, ids: Sequence[object]) -> list[Notification]:
    """Marks the viewer's notifications read; any id that is not theirs is NOT_FOUND (all or none)."""
    viewer = ctx.require_viewer()
    if len(ids) > MARK_MAX:
        raise bad_input("ids", f"At most {MARK_MAX} notifications at once.")
    wanted = [parse_id("Notification", i) for i in ids]
    async with transaction(viewer.id) as tx:
        rows = {
            n.id: n for n in await Notification.filter(id__in=wanted, user_id=viewer.id).using_db(tx.conn)
        }
        missing = [i for i in wanted if i not in rows]
        if missing:
            raise not_found("Notification", missing[0])
        await _mark(tx, [n for n in rows.values() if n.read_at is None])
    return [rows[i] for i in dict.fromkeys(wanted)]


async def mark_all_read(ctx: Context) -> int:
    viewer = ctx.require_viewer()
    async with transaction(viewer.id) as tx:
        unread = await Notification.filter(user_id=viewer.id, read_at__isnull=True).using_db(tx.conn)
        await _mark(tx, unread)
    return len(unread)


async def _mark(tx: Transaction, unread: list[Notification]) -> None:
    if not unread:
        return
    now = timezone.now()
    await Notification.filter(id__in=[n.id for n in unread]).using_db(tx.conn).update(read_at=now)
    for notification in unread:
        notification.read_at = now
    user_id = unread[0].user_id
    tx.emit(
        topics.user_notifications(user_id),
        "READ",
        {"notifications": [snapshot(n) for n in unread]},
    )


async def delete_notification(ctx: Context, *, notification_id: object) -> Notification:
    viewer = ctx.require_viewer()
    nid = parse_id("Notification", notification_id)
    async with transaction(viewer.id) as tx:
        notification = await Notification.filter(id=nid, user_id=viewer.id).using_db(tx.conn).first()
        if notification is None:
            raise not_found("Notification", notification_id)
        await notification.delete(using_db=tx.conn)
        tx.emit(topics.user_notifications(viewer.id), "DELETED", {"notifications": [snapshot(notification)]})
    return notification
