"""Notification e-mail over SMTP: each worker runs a sender that claims the outbox's due rows,
sends them with aiosmtplib and records the outcome (resolvers/outbox holds the rules).

A row is sent by one sender at a time: the claim holds it for LEASE, longer than a send may take
(SEND_TIMEOUT_SECONDS). A sender that stops gracefully gives back what it could not finish; one
that died mid-send holds its rows until the lease ends, then another takes them. That is the one
case where a message can go out twice (the server took it, its sender died before recording so);
every copy has the same Message-ID, by which mail systems drop duplicates."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

import aiosmtplib
from tortoise import timezone

from pulseboard.models import EmailOutbox
from pulseboard.periodic import Periodic, logger
from pulseboard.resolvers import outbox
from pulseboard.settings import Settings

POLL_SECONDS = 1.0  # how often a sender looks for due rows
SEND_TIMEOUT_SECONDS = 60.0  # one message, connection to QUIT
LEASE = dt.timedelta(minutes=5)  # a claimed batch is sent (or failed) well within it
BATCH = 10  # rows claimed at once, sent concurrently
CLOSE_GRACE_SECONDS = 5.0  # how long stopping waits for the batch being sent


@dataclass(frozen=True)
class Smtp:
    hostname: str
    port: int
    username: str | None
    password: str | None
    implicit_tls: bool  # smtps://; smtp:// upgrades with STARTTLS when the server offers it

    @classmethod
    def from_url(cls, url: str) -> Smtp:
        """From PULSEBOARD_SMTP_URL, as Settings.check accepted it."""
        parts = urlsplit(url)
        implicit = parts.scheme == "smtps"
        return cls(
            hostname=parts.hostname or "",
            port=parts.port or (465 if implicit else 25),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            implicit_tls=implicit,
        )


def _permanent(error: Exception) -> bool:
    """A 5xx answer: the server refused the message for good, so retrying cannot help."""
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        return all(refused.code >= 500 for refused in error.recipients)
    return isinstance(error, aiosmtplib.SMTPResponseException) and error.code >= 500


class Sender(Periodic):
    """The worker's sender task. `clock` is the time rows are due by (a parameter for tests that
    must pass quiet hours without waiting for them)."""

    name = "e-mail sender"

    def __init__(self, settings: Settings, *, clock: Callable[[], dt.datetime] = timezone.now) -> None:
        super().__init__(POLL_SECONDS)
        self.smtp = Smtp.from_url(settings.smtp_url)
        self.mail_from = settings.mail_from
        self.public_url = settings.public_url.rstrip("/")
        self.retry_seconds = settings.mail_retry_seconds
        self.max_attempts = settings.mail_max_attempts
        self.clock = clock

    async def close(self, grace: float | None = CLOSE_GRACE_SECONDS) -> None:
        """Lets the batch being sent finish (CLOSE_GRACE_SECONDS at most); sends cut short then
        give their rows back for any sender to take at once."""
        await super().close(grace)

    async def step(self) -> int:
        return await self.send_due()

    async def send_due(self) -> int:
        """Sends what is due now; how many rows it claimed."""
        rows = await outbox.claim(self.clock(), lease=LEASE, limit=BATCH)
        await asyncio.gather(*(self._send(row) for row in rows))
        return len(rows)

    async def _send(self, row: EmailOutbox) -> None:
        try:
            async with asyncio.timeout(SEND_TIMEOUT_SECONDS):
                await aiosmtplib.send(
                    self._message(row),
                    hostname=self.smtp.hostname,
                    port=self.smtp.port,
                    username=self.smtp.username,
                    password=self.smtp.password,
                    use_tls=self.smtp.implicit_tls,
                    start_tls=False if self.smtp.implicit_tls else None,
                )
        except asyncio.CancelledError:  # stopping: the server has not taken it (or only just)
            await outbox.release(row)
            raise
        except Exception as error:  # whatever stopped it, the attempt is recorded
            given_up = await outbox.failed(
                row,
                self.clock(),
                f"{type(error).__name__}: {error}",
                permanent=_permanent(error),
                retry_seconds=self.retry_seconds,
                max_attempts=self.max_attempts,
            )
            verdict = "given up" if given_up else "will retry"
            logger.warning("e-mail %s attempt %s failed (%s): %s", row.id, row.attempts, verdict, error)
        else:
            await outbox.sent(row, self.clock())

    def _message(self, row: EmailOutbox) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.mail_from
        message["To"] = row.recipient
        message["Subject"] = row.subject
        domain = self.mail_from.rpartition("@")[2]
        message["Message-ID"] = f"<notification-{row.notification_id}@{domain}>"
        message["X-Pulseboard-Notification"] = str(row.notification_id)
        message.set_content(row.text_body)
        message.add_alternative(row.html_body, subtype="html")
        return message


_current: Sender | None = None


def install(sender: Sender | None) -> None:
    """The worker's sender while its lifespan runs (None: e-mail is off)."""
    global _current
    _current = sender


def current() -> Sender | None:
    return _current
