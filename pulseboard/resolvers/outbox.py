"""The e-mail outbox's rules: what a notification's e-mail says, when it is due, how senders
share the rows (claims with a lease), and what a failure does (retry with backoff, or give up).

pulseboard/mail.py is the transport: it claims due rows, sends them over SMTP and reports back
here. Every state is in the table, so any worker, after any restart, carries on where another
stopped; a claim's lease is what releases the rows of a sender that died mid-send."""

from __future__ import annotations

import datetime as dt
import html

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.expressions import F, Q
from tortoise.transactions import in_transaction

from pulseboard.models import EmailOutbox, Notification

RETRY_CAP = dt.timedelta(hours=1)  # the longest wait between two attempts
ERROR_MAX = 1000  # characters of the last error kept


def link(public_url: str, notification: Notification) -> str | None:
    """Where the notification's task or ticket is, under PULSEBOARD_PUBLIC_URL (unset: no link)."""
    if not public_url:
        return None
    if notification.task_id is not None:
        return f"{public_url}/tasks/{notification.task_id}"
    if notification.ticket_id is not None:
        return f"{public_url}/tickets/{notification.ticket_id}"
    return public_url


def _footer(notification: Notification) -> str:
    return (
        f"You get this e-mail because e-mail is on for {notification.type.value} in your"
        " notification preferences."
    )


def text_body(notification: Notification, url: str | None) -> str:
    parts = [notification.title, notification.body, f"Open it: {url}" if url else "", _footer(notification)]
    return "\n\n".join(part for part in parts if part) + "\n"


def html_body(notification: Notification, url: str | None) -> str:
    """The same as text_body, with every piece of text escaped: titles and comments are users'."""
    parts = [f"<p><strong>{html.escape(notification.title)}</strong></p>"]
    if notification.body:
        parts.append(f'<p style="white-space: pre-wrap">{html.escape(notification.body)}</p>')
    if url:
        parts.append(f'<p><a href="{html.escape(url, quote=True)}">Open it in pulseboard</a></p>')
    parts.append(f'<p style="color: #666; font-size: small">{html.escape(_footer(notification))}</p>')
    return "<!doctype html>\n<html><body>\n" + "\n".join(parts) + "\n</body></html>\n"


async def enqueue(
    conn: BaseDBAsyncClient, notification: Notification, *, recipient: str, due: dt.datetime, public_url: str
) -> EmailOutbox:
    """The notification's e-mail, rendered now and written in its transaction; sent from `due`
    on (the end of the recipient's quiet hours, or now)."""
    url = link(public_url, notification)
    return await EmailOutbox.create(
        notification_id=notification.id,
        recipient=recipient,
        subject=" ".join(notification.title.split()),  # one line: a header
        text_body=text_body(notification, url),
        html_body=html_body(notification, url),
        next_attempt_at=due,
        using_db=conn,
    )


def _due(now: dt.datetime) -> Q:
    unclaimed = Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)
    return Q(unclaimed, sent_at__isnull=True, failed_at__isnull=True, next_attempt_at__lte=now)


async def claim(now: dt.datetime, *, lease: dt.timedelta, limit: int) -> list[EmailOutbox]:
    """Up to `limit` due rows, each counted as an attempt and held until now + lease. On
    PostgreSQL, rows another sender is claiming are skipped (FOR UPDATE SKIP LOCKED), so senders
    never wait for each other nor take the same row; SQLite has one writer, the transaction is
    enough."""
    async with in_transaction() as conn:
        due = EmailOutbox.filter(_due(now)).order_by("next_attempt_at", "id").limit(limit)
        rows = await due.select_for_update(skip_locked=True).using_db(conn)
        if rows:
            ids = [row.id for row in rows]
            held = now + lease
            await (
                EmailOutbox.filter(id__in=ids)
                .using_db(conn)
                .update(claimed_until=held, attempts=F("attempts") + 1)
            )
            for row in rows:
                row.claimed_until, row.attempts = held, row.attempts + 1
    return rows


async def sent(row: EmailOutbox, now: dt.datetime) -> None:
    await EmailOutbox.filter(id=row.id).update(sent_at=now, claimed_until=None)


async def release(row: EmailOutbox) -> None:
    """Gives a claimed row back before its lease ends (its sender stopped mid-send)."""
    await EmailOutbox.filter(id=row.id, sent_at__isnull=True).update(claimed_until=None)


def backoff(attempts: int, first: float) -> dt.timedelta:
    """The wait after the `attempts`-th failed attempt: `first` seconds, doubled per attempt,
    at most RETRY_CAP."""
    return min(RETRY_CAP, dt.timedelta(seconds=first * 2 ** (attempts - 1)))


async def failed(
    row: EmailOutbox,
    now: dt.datetime,
    error: str,
    *,
    permanent: bool,
    retry_seconds: float,
    max_attempts: int,
) -> bool:
    """Records a failed attempt: tried again after a backoff, or given up (failed_at) when the
    server refused for good or the attempts are spent. Whether it was given up."""
    give_up = permanent or row.attempts >= max_attempts
    values: dict[str, object] = {"claimed_until": None, "last_error": error[:ERROR_MAX]}
    if give_up:
        values["failed_at"] = now
    else:
        values["next_attempt_at"] = now + backoff(row.attempts, retry_seconds)
    await EmailOutbox.filter(id=row.id).update(**values)
    return give_up
