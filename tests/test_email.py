"""Notification e-mail, really sent: a real SMTP server (aiosmtpd on loopback) receives what the
app's sender delivers from the outbox, held through quiet hours, retried, and sent once."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from tortoise import timezone

from pulseboard.mail import LEASE, Smtp
from pulseboard.models import EmailOutbox, Role
from pulseboard.resolvers import outbox
from pulseboard.settings import Settings, SettingsError, from_env
from tests.conftest import BROADCAST_URL, ON_POSTGRES
from tests.helpers import Api, Person, serving
from tests.live import free_port, worker_processes
from tests.test_notification_channels import quiet_now
from tests.test_notifications import UPDATE_PREFERENCES, new_task, shared_project, support_ticket

PUBLIC_URL = "https://board.example.test"
CREATE_TASK = """mutation($p: ID!, $t: String!, $u: ID) {
  createTask(input: {projectId: $p, title: $t, assigneeId: $u}) { id }
}"""
DELIVERY = "{ notifications(first: 10) { edges { node { id delivery { inApp browser email quiet } } } } }"
TIMEOUT = 15.0


class SmtpInbox:
    """The test's SMTP server's handler: what it accepted. It answers the first `refusals`
    messages with `reply` instead."""

    def __init__(self, refusals: int = 0, reply: str = "451 4.3.0 Try again later") -> None:
        self.refusals, self.reply = refusals, reply
        self.refused = 0
        self.messages: list[tuple[list[str], EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refused < self.refusals:
            self.refused += 1
            return self.reply
        message = message_from_bytes(envelope.content, policy=policy.default)
        self.messages.append((list(envelope.rcpt_tos), message))  # type: ignore[arg-type]
        return "250 OK"

    async def received(self, count: int = 1) -> list[tuple[list[str], EmailMessage]]:
        for _ in range(int(TIMEOUT / 0.05)):
            if len(self.messages) >= count:
                return self.messages
            await asyncio.sleep(0.05)
        raise AssertionError(f"{len(self.messages)} of {count} messages arrived")


@contextmanager
def smtp_server(inbox: SmtpInbox) -> Iterator[str]:
    """aiosmtpd on a free loopback port (a thread of its own); its smtp:// URL."""
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield f"smtp://127.0.0.1:{controller.port}"
    finally:
        controller.stop()


def mailing(settings: Settings, smtp_url: str, **overrides: Any) -> Settings:
    """`settings` sending to `smtp_url`, retrying quickly: after 0.2 s, 0.4 s, then giving up."""
    mail = {"mail_from": "pulseboard@example.test", "public_url": PUBLIC_URL + "/", "mail_retry_seconds": 0.2}
    return dataclasses.replace(settings, smtp_url=smtp_url, **{**mail, "mail_max_attempts": 3, **overrides})


@pytest.fixture
def smtp(request: pytest.FixtureRequest) -> SmtpInbox:
    """The test's SMTP server's handler; parametrize indirectly with its refusals and reply."""
    return SmtpInbox(**getattr(request, "param", {}))


@pytest.fixture
async def api(settings: Settings, smtp: SmtpInbox) -> AsyncIterator[Api]:
    """The app with a sender delivering to the test's SMTP server (which `smtp` configures)."""
    with smtp_server(smtp) as url:
        async with serving(mailing(settings, url)) as api:
            yield api


async def assigned(api: Api, who: Person, title: str = "Fix") -> str:
    other = await api.person()
    return await new_task(api, other, await shared_project(api, other, who), title, assignee=who)


def parts(message: EmailMessage) -> tuple[str, str]:
    text, html = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None and html is not None, message
    # As sent: lines end in CRLF on the wire.
    return tuple(part.get_content().replace("\r\n", "\n") for part in (text, html))  # type: ignore[return-value,attr-defined]


async def outbox_row(who: Person) -> EmailOutbox:
    return await EmailOutbox.get(recipient=who.email)


async def sent_row(who: Person) -> EmailOutbox:
    """The person's outbox row once its sender has recorded the send: the SMTP server has the
    message a moment before the sender writes that down."""
    await until(lambda: EmailOutbox.exists(recipient=who.email, sent_at__isnull=False))
    return await outbox_row(who)


async def until(check: Any) -> None:
    for _ in range(int(TIMEOUT / 0.05)):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("not within the timeout")


# --- what is sent -------------------------------------------------------------------------------


async def test_a_notification_is_emailed_with_text_html_and_a_link(api: Api, smtp: SmtpInbox) -> None:
    bob = await api.person()
    task = await assigned(api, bob, title="Fix <b>login</b> & more")
    [(recipients, message)] = await smtp.received()
    assert recipients == [bob.email]
    assert message["To"] == bob.email
    assert message["From"] == "pulseboard@example.test"
    assert message["Subject"] == "You were assigned Fix <b>login</b> & more"
    text, html = parts(message)
    link = f"{PUBLIC_URL}/tasks/{task}"
    assert "You were assigned Fix <b>login</b> & more" in text
    assert f"Open it: {link}" in text
    assert "Fix &lt;b&gt;login&lt;/b&gt; &amp; more" in html and "<b>login" not in html
    assert f'<a href="{link}">' in html
    [node] = [e["node"] for e in (await api.ok(bob, DELIVERY))["notifications"]["edges"]]
    assert node["delivery"] == {"inApp": True, "browser": True, "email": True, "quiet": False}
    assert message["X-Pulseboard-Notification"] == node["id"]


async def test_a_comment_is_escaped_in_html_and_kept_as_written_in_text(api: Api, smtp: SmtpInbox) -> None:
    alice, bob = await api.person(), await api.person()
    task = await new_task(api, alice, await shared_project(api, alice, bob), "Plan", assignee=bob)
    body = '<script>alert("x")</script>\nsecond line'
    await api.ok(
        alice,
        "mutation($id: ID!, $b: String!) { addTaskComment(taskId: $id, body: $b) { id } }",
        id=task,
        b=body,
    )
    # The assignment's mail and the comment's, in whichever order the sender got to them.
    by_subject = {message["Subject"]: message for _, message in await smtp.received(2)}
    assert set(by_subject) == {"You were assigned Plan", "New comment on Plan"}
    message = by_subject["New comment on Plan"]
    text, html = parts(message)
    assert body in text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html and "<script>" not in html


async def test_a_ticket_mail_links_to_the_ticket(api: Api, smtp: SmtpInbox) -> None:
    admin, agent, _, ticket = await support_ticket(api)
    await api.ok(
        admin,
        "mutation($id: ID!, $u: ID) { assignTicket(id: $id, assigneeId: $u) { id } }",
        id=ticket,
        u=agent.id,
    )
    [(recipients, message)] = await smtp.received()
    assert recipients == [agent.email]
    assert message["Subject"] == "You were assigned ticket VPN down"
    text, html = parts(message)
    assert f"Open it: {PUBLIC_URL}/tickets/{ticket}" in text
    assert f'<a href="{PUBLIC_URL}/tickets/{ticket}">' in html


async def test_a_type_with_email_off_sends_nothing(api: Api, smtp: SmtpInbox) -> None:
    bob = await api.person()
    await api.ok(bob, UPDATE_PREFERENCES, input={"types": [{"type": "TASK_ASSIGNED", "email": False}]})
    await assigned(api, bob)
    [node] = [e["node"] for e in (await api.ok(bob, DELIVERY))["notifications"]["edges"]]
    assert node["delivery"]["email"] is False
    assert await EmailOutbox.all().count() == 0
    # Another type still mails (so the sender is running, and would have sent the first).
    await api.ok(bob, UPDATE_PREFERENCES, input={"types": [{"type": "TASK_ASSIGNED", "email": True}]})
    await assigned(api, bob, title="Second")
    [(_, message)] = await smtp.received()
    assert message["Subject"] == "You were assigned Second"


# --- quiet hours, retries, restarts ---------------------------------------------------------------


async def test_quiet_hours_hold_the_mail_until_they_end(api: Api, smtp: SmtpInbox) -> None:
    bob = await api.person()
    quiet = quiet_now("America/New_York")
    await api.ok(bob, UPDATE_PREFERENCES, input={"quietHours": quiet})
    await assigned(api, bob)
    [node] = [e["node"] for e in (await api.ok(bob, DELIVERY))["notifications"]["edges"]]
    assert node["delivery"] == {"inApp": True, "browser": False, "email": True, "quiet": True}
    row = await outbox_row(bob)
    # Due at the end of the quiet period: the next `end` in New York (an hour from now).
    assert row.next_attempt_at.astimezone(dt.UTC).strftime("%M") == quiet["end"][3:]
    assert dt.timedelta(minutes=58) < row.next_attempt_at - timezone.now() <= dt.timedelta(hours=1)
    await asyncio.sleep(2.5)  # the sender looked twice at least
    assert smtp.messages == []
    sender = api.app.state.mail
    sender.clock = lambda: timezone.now() + dt.timedelta(hours=1, minutes=1)
    [(recipients, _)] = await smtp.received()
    assert recipients == [bob.email]


@pytest.mark.parametrize("smtp", [{"refusals": 2}], ids=["refuses twice"], indirect=True)
async def test_a_refusing_server_is_tried_again_and_the_mail_sent_once(api: Api, smtp: SmtpInbox) -> None:
    bob = await api.person()
    await assigned(api, bob)
    await smtp.received()
    row = await sent_row(bob)
    assert (row.attempts, row.sent_at is not None, row.failed_at) == (3, True, None)
    assert row.last_error is not None and "451" in row.last_error
    await asyncio.sleep(1.5)
    assert len(smtp.messages) == 1


@pytest.mark.parametrize(
    "smtp",
    [{"refusals": 100}, {"refusals": 100, "reply": "550 5.1.1 No such mailbox"}],
    ids=["4xx until attempts run out", "5xx at once"],
    indirect=True,
)
async def test_the_sender_gives_up_keeping_the_last_error(api: Api, smtp: SmtpInbox) -> None:
    bob = await api.person()
    await assigned(api, bob)

    async def given_up() -> bool:
        return (await outbox_row(bob)).failed_at is not None

    await until(given_up)
    row = await outbox_row(bob)
    permanent = smtp.reply.startswith("5")
    assert row.attempts == (1 if permanent else 3)  # mail_max_attempts
    assert row.sent_at is None and row.last_error is not None and smtp.reply[:3] in row.last_error
    refused = smtp.refused
    await asyncio.sleep(1.5)
    assert (smtp.refused, smtp.messages) == (refused, [])  # and it is not tried again


async def test_the_outbox_survives_a_restart(settings: Settings, smtp: SmtpInbox) -> None:
    nowhere = f"smtp://127.0.0.1:{free_port()}"  # nothing listens: every attempt fails
    async with serving(mailing(settings, nowhere, mail_max_attempts=100)) as down:
        bob = await down.person()
        await assigned(down, bob)

        async def tried() -> bool:
            return (await outbox_row(bob)).attempts >= 1

        await until(tried)
        assert (await outbox_row(bob)).sent_at is None
    with smtp_server(smtp) as url:
        async with serving(mailing(settings, url)):
            [(recipients, _)] = await smtp.received()
    assert recipients == [bob.email]


async def test_a_claim_of_a_sender_that_died_is_taken_again_after_its_lease(
    api: Api, smtp: SmtpInbox
) -> None:
    bob = await api.person()
    await api.ok(bob, UPDATE_PREFERENCES, input={"quietHours": quiet_now()})  # held: not due yet
    await assigned(api, bob)
    later = timezone.now() + dt.timedelta(hours=1, minutes=1)
    # Another worker claims it when due, then dies before sending it.
    [claimed] = await outbox.claim(later, lease=LEASE, limit=10)
    sender = api.app.state.mail
    sender.clock = lambda: later
    await asyncio.sleep(2.5)
    assert smtp.messages == []  # held by the claim
    sender.clock = lambda: later + LEASE + dt.timedelta(seconds=1)
    await smtp.received()
    row = await sent_row(bob)
    assert (row.id, row.attempts, row.sent_at is not None) == (claimed.id, 2, True)


@pytest.mark.skipif(
    not (ON_POSTGRES and BROADCAST_URL.startswith("redis")),
    reason="several workers need PostgreSQL and Redis (the suite's second pass)",
)
async def test_two_workers_share_the_outbox_and_send_each_mail_once(
    settings: Settings, smtp: SmtpInbox
) -> None:
    with smtp_server(smtp) as url:
        env = {
            "PULSEBOARD_SMTP_URL": url,
            "PULSEBOARD_MAIL_FROM": "pulseboard@example.test",
            "PULSEBOARD_PUBLIC_URL": PUBLIC_URL,
        }
        with worker_processes(settings, 2, env=env) as (one, two):
            owner, bob = one.token("owner@example.test"), one.token("bob@example.test")
            bob_id = (await one.gql(bob, "{ viewer { id } }"))["viewer"]["id"]
            project = (await one.gql(owner, 'mutation { createProject(input: {name: "B"}) { id } }'))[
                "createProject"
            ]["id"]
            await one.gql(
                one.token("admin@example.test", Role.ADMIN),
                "mutation($p: ID!, $u: ID!) { addProjectMember(projectId: $p, userId: $u) { id } }",
                p=project,
                u=bob_id,
            )
            count = 30
            await asyncio.gather(
                *(
                    (one if i % 2 else two).gql(owner, CREATE_TASK, p=project, t=f"t{i}", u=bob_id)
                    for i in range(count)
                )
            )
            await smtp.received(count)
            await asyncio.sleep(2.5)  # both senders looked again: nothing more comes
    ids = [message["X-Pulseboard-Notification"] for _, message in smtp.messages]
    assert len(ids) == count and len(set(ids)) == count
    assert sorted(message["Subject"] for _, message in smtp.messages) == sorted(
        f"You were assigned t{i}" for i in range(count)
    )


# --- settings -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"PULSEBOARD_SMTP_URL": "http://mail.example.test"}, "PULSEBOARD_SMTP_URL"),
        ({"PULSEBOARD_SMTP_URL": "smtp://"}, "PULSEBOARD_SMTP_URL"),
        ({"PULSEBOARD_SMTP_URL": "smtp://mail.example.test:port"}, "PULSEBOARD_SMTP_URL"),
        ({"PULSEBOARD_SMTP_URL": "smtp://mail.example.test"}, "PULSEBOARD_MAIL_FROM"),
        ({"PULSEBOARD_PUBLIC_URL": "board.example.test"}, "PULSEBOARD_PUBLIC_URL"),
        ({"PULSEBOARD_MAIL_MAX_ATTEMPTS": "0"}, "PULSEBOARD_MAIL_MAX_ATTEMPTS"),
    ],
)
def test_unusable_mail_settings_refuse_to_start(env: dict[str, str], problem: str) -> None:
    with pytest.raises(SettingsError, match=problem):
        from_env({"PULSEBOARD_JWT_SECRET": "x" * 40, **env})


def test_smtp_urls_are_read_with_credentials_and_tls() -> None:
    assert Smtp.from_url("smtps://me%40corp:p%3Ass@mail.example.test") == Smtp(
        "mail.example.test", 465, "me@corp", "p:ss", implicit_tls=True
    )
    assert Smtp.from_url("smtp://mail.example.test:2525") == Smtp(
        "mail.example.test", 2525, None, None, False
    )


async def test_without_an_smtp_server_email_is_off_and_the_log_says_so(settings: Settings) -> None:
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger, handler = logging.getLogger("pulseboard"), Collect()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        async with serving(settings) as api:
            bob = await api.person()
            await assigned(api, bob)
            [node] = [e["node"] for e in (await api.ok(bob, DELIVERY))["notifications"]["edges"]]
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert "e-mail off: PULSEBOARD_SMTP_URL is not set" in lines
    assert node["delivery"]["email"] is False
