"""Delivery decisions stored with each notification (in-app, browser, e-mail, sound, quiet hours),
browser-only notifications through the subscription, and what each notification event carries."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from tortoise import Tortoise, connections
from tortoise.migrations.api.migrate import migrate

from pulseboard.app import apply_migrations
from pulseboard.models import Event, Notification, Role
from pulseboard.resolvers.preferences import QuietHours
from pulseboard.settings import Settings, tortoise_config
from pulseboard.subscriptions.encoding import cursor
from tests.helpers import Api, Person, code
from tests.live import WS, LiveServer, listening, ws
from tests.test_notifications import UPDATE_PREFERENCES, new_task, shared_project

DELIVERY = "delivery { inApp browser email sound quiet }"
INBOX = (
    f"{{ notifications(first: 50) {{ totalCount unreadCount edges {{ node {{ id type {DELIVERY} }} }} }} }}"
)
COMMENT = 'mutation($id: ID!) { addTaskComment(taskId: $id, body: "Ping") { id } }'
SELECTION = f"type unreadCount actor {{ id name }} notifications {{ id type readAt {DELIVERY} }}"
EVENTS = f"subscription {{ notifications {{ {SELECTION} }} }}"
REPLAY = f"subscription($after: String) {{ notifications(after: $after) {{ {SELECTION} }} }}"
CREATE_ASSIGNED = """
mutation($p: ID!, $u: ID) { createTask(input: {projectId: $p, title: "T", assigneeId: $u}) { id } }"""


def quiet_now(zone: str = "Asia/Tokyo", *, around: bool = True) -> dict[str, str]:
    """Quiet hours in `zone` that the current time is inside (around) or outside of, an hour
    from either edge."""
    local = dt.datetime.now(ZoneInfo(zone))
    shift = dt.timedelta(hours=0 if around else 3)
    start, end = local - dt.timedelta(hours=1) + shift, local + dt.timedelta(hours=1) + shift
    return {"start": start.strftime("%H:%M"), "end": end.strftime("%H:%M"), "timezone": zone}


def delivery(**on: bool) -> dict[str, bool]:
    return {"inApp": False, "browser": False, "email": False, "sound": False, "quiet": False, **on}


async def inbox(api: Api, who: Person) -> dict:
    return (await api.ok(who, INBOX))["notifications"]  # type: ignore[no-any-return]


async def assigned(api: Api, who: Person) -> str:
    """Assigns `who` a task (by someone else); the task's id."""
    other = await api.person()
    return await new_task(api, other, await shared_project(api, other, who), "Fix", assignee=who)


# --- decisions ----------------------------------------------------------------------------------


async def test_the_defaults_deliver_in_app_and_to_the_browser_with_sound(api: Api) -> None:
    bob = await api.person()
    await assigned(api, bob)
    [edge] = (await inbox(api, bob))["edges"]
    # No SMTP server is configured in this test: e-mail is off whatever the preferences say.
    assert edge["node"]["delivery"] == delivery(inApp=True, browser=True, sound=True)
    await api.ok(
        bob,
        UPDATE_PREFERENCES,
        input={"sound": False, "types": [{"type": "TASK_ASSIGNED", "browser": False}]},
    )
    await assigned(api, bob)
    latest = (await inbox(api, bob))["edges"][0]["node"]
    assert latest["delivery"] == delivery(inApp=True)


async def test_quiet_hours_silence_the_browser_never_in_app_storage(api: Api) -> None:
    bob = await api.person()
    await api.ok(bob, UPDATE_PREFERENCES, input={"quietHours": quiet_now()})
    await assigned(api, bob)
    [edge] = (await inbox(api, bob))["edges"]
    assert edge["node"]["delivery"] == delivery(inApp=True, quiet=True)
    # Quiet hours that do not include now change nothing.
    await api.ok(bob, UPDATE_PREFERENCES, input={"quietHours": quiet_now(around=False)})
    await assigned(api, bob)
    latest = (await inbox(api, bob))["edges"][0]["node"]
    assert latest["delivery"] == delivery(inApp=True, browser=True, sound=True)


async def test_nothing_is_stored_or_announced_when_no_channel_takes_it(api: Api) -> None:
    bob = await api.person()
    # Browser only, in quiet hours: the pop-up is silenced, not held, so nothing is left.
    await api.ok(
        bob,
        UPDATE_PREFERENCES,
        input={"quietHours": quiet_now(), "types": [{"type": "TASK_ASSIGNED", "inApp": False}]},
    )
    await assigned(api, bob)
    assert await Notification.filter(user_id=int(bob.id)).count() == 0
    assert await Event.filter(topic=f"user:{bob.id}:notifications").count() == 0


# --- browser-only notifications -----------------------------------------------------------------


async def person(live: LiveServer, email: str, role: Role = Role.MEMBER) -> tuple[str, str]:
    token = live.token(email, role)
    return token, (await live.gql(token, "{ viewer { id } }"))["viewer"]["id"]


async def board(live: LiveServer, owner: str, *member_ids: str) -> str:
    created = await live.gql(owner, 'mutation { createProject(input: {name: "B"}) { id } }')
    project = created["createProject"]["id"]
    admin = live.token("admin@example.test", Role.ADMIN)
    for member in member_ids:
        await live.gql(
            admin,
            "mutation($p: ID!, $u: ID!) { addProjectMember(projectId: $p, userId: $u) { id } }",
            p=project,
            u=member,
        )
    return project  # type: ignore[no-any-return]


async def subscribed(live: LiveServer, client: WS, user_id: str) -> None:
    await client.subscribe("1", EVENTS)
    await listening(live, f"user:{user_id}:notifications")


async def test_a_browser_only_type_reaches_the_subscription_and_no_list(live: LiveServer) -> None:
    alice, _ = await person(live, "alice@example.test")
    bob, bob_id = await person(live, "bob@example.test")
    project = await board(live, alice, bob_id)
    task = (await live.gql(bob, CREATE_ASSIGNED, p=project, u=None))["createTask"]["id"]
    await live.gql(
        bob,
        UPDATE_PREFERENCES,
        input={"types": [{"type": "TASK_COMMENTED", "inApp": False, "browser": True}]},
    )
    async with ws(live, bob) as client:
        await subscribed(live, client, bob_id)
        await live.gql(alice, COMMENT, id=task)
        event = (await client.next("1"))["notifications"]
    assert event["type"] == "CREATED"
    [notification] = event["notifications"]
    assert notification["type"] == "TASK_COMMENTED"
    assert notification["delivery"] == delivery(browser=True, sound=True)
    assert event["unreadCount"] == 0
    listed = (await live.gql(bob, INBOX))["notifications"]
    assert (listed["totalCount"], listed["unreadCount"], listed["edges"]) == (0, 0, [])


async def test_a_browser_only_notification_cannot_be_marked_or_deleted(api: Api) -> None:
    bob = await api.person()
    await api.ok(bob, UPDATE_PREFERENCES, input={"types": [{"type": "TASK_ASSIGNED", "inApp": False}]})
    await assigned(api, bob)
    [stored] = await Notification.filter(user_id=int(bob.id))
    assert (stored.in_app, stored.browser) == (False, True)
    mark = "mutation($ids: [ID!]!) { markNotificationsRead(ids: $ids) { id } }"
    assert code(await api.error(bob, mark, ids=[str(stored.id)])) == "NOT_FOUND"
    delete = "mutation($id: ID!) { deleteNotification(id: $id) { id } }"
    assert code(await api.error(bob, delete, id=str(stored.id))) == "NOT_FOUND"
    assert (await api.ok(bob, "mutation { markAllNotificationsRead }"))["markAllNotificationsRead"] == 0


# --- what each event carries --------------------------------------------------------------------


async def test_events_carry_the_actor_and_the_new_unread_count(live: LiveServer) -> None:
    alice, alice_id = await person(live, "alice@example.test")
    bob, bob_id = await person(live, "bob@example.test")
    project = await board(live, alice, bob_id)
    async with ws(live, bob) as client:
        await subscribed(live, client, bob_id)
        for expected in (1, 2):
            await live.gql(alice, CREATE_ASSIGNED, p=project, u=bob_id)
            event = (await client.next("1"))["notifications"]
            assert (event["type"], event["unreadCount"]) == ("CREATED", expected)
            assert event["actor"] == {"id": alice_id, "name": "alice"}
        first = event["notifications"][0]["id"]
        await live.gql(bob, "mutation($ids: [ID!]!) { markNotificationsRead(ids: $ids) { id } }", ids=[first])
        read = (await client.next("1"))["notifications"]
        assert (read["type"], read["unreadCount"], read["actor"]["id"]) == ("READ", 1, bob_id)
        await live.gql(bob, "mutation { markAllNotificationsRead }")
        assert (await client.next("1"))["notifications"]["unreadCount"] == 0
        await live.gql(bob, "mutation($id: ID!) { deleteNotification(id: $id) { id } }", id=first)
        deleted = (await client.next("1"))["notifications"]
        assert (deleted["type"], deleted["unreadCount"]) == ("DELETED", 0)
    # The count is written with the event, not computed per delivery.
    events = await Event.filter(topic=f"user:{bob_id}:notifications").order_by("seq")
    assert [e.payload["unreadCount"] for e in events] == [1, 2, 1, 0, 0]


async def test_an_event_logged_before_unread_counts_replays_with_none(live: LiveServer) -> None:
    alice, _ = await person(live, "alice@example.test")
    bob, bob_id = await person(live, "bob@example.test")
    project = await board(live, alice, bob_id)
    await live.gql(alice, CREATE_ASSIGNED, p=project, u=bob_id)
    [event] = await Event.filter(topic=f"user:{bob_id}:notifications")
    event.payload = {"notifications": event.payload["notifications"]}  # as events were written before
    await event.save()
    async with ws(live, bob) as client:
        await client.subscribe("1", REPLAY, after=cursor(event.topic, 0))
        replayed = (await client.next("1"))["notifications"]
    assert (replayed["type"], replayed["unreadCount"]) == ("CREATED", None)
    assert replayed["actor"]["name"] == "alice"


# --- quiet hours ----------------------------------------------------------------------------------

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize(
    ("start", "end", "local", "until"),
    [
        ("22:00", "07:00", dt.datetime(2026, 6, 1, 23, 30), dt.datetime(2026, 6, 2, 7, 0)),  # spans midnight
        ("22:00", "07:00", dt.datetime(2026, 6, 2, 3, 0), dt.datetime(2026, 6, 2, 7, 0)),
        ("22:00", "07:00", dt.datetime(2026, 6, 2, 7, 0), None),  # the end is not quiet
        ("22:00", "07:00", dt.datetime(2026, 6, 1, 22, 0), dt.datetime(2026, 6, 2, 7, 0)),  # the start is
        ("22:00", "07:00", dt.datetime(2026, 6, 1, 12, 0), None),
        ("09:00", "17:00", dt.datetime(2026, 6, 1, 12, 0), dt.datetime(2026, 6, 1, 17, 0)),
        ("09:00", "17:00", dt.datetime(2026, 6, 1, 8, 59), None),
        # The night clocks go forward: 07:00 the next morning is in summer time.
        ("22:00", "07:00", dt.datetime(2026, 3, 28, 23, 0), dt.datetime(2026, 3, 29, 7, 0)),
    ],
)
def test_quiet_hours_end_at_the_next_local_end(
    start: str, end: str, local: dt.datetime, until: dt.datetime | None
) -> None:
    quiet = QuietHours(start, end, "Europe/Berlin")
    expected = None if until is None else until.replace(tzinfo=BERLIN).astimezone(dt.UTC)
    assert quiet.until(local.replace(tzinfo=BERLIN).astimezone(dt.UTC)) == expected


# --- migrating ------------------------------------------------------------------------------------


async def test_notifications_written_before_channels_were_in_app_only(settings: Settings) -> None:
    # 0007 adds the delivery columns (NOT NULL): rows from before get the database defaults.
    config = tortoise_config(settings.database_url)
    await migrate(config=config, app_labels=["models"], target="models.0006_sorting_and_search")
    try:
        await connections.get("default").execute_script(
            "INSERT INTO users (id, sub, email, name, role, created_at)"
            " VALUES (1, 's', 'a@example.test', 'A', 'MEMBER', CURRENT_TIMESTAMP);"
            "INSERT INTO notifications (id, user_id, type, title, body, created_at)"
            " VALUES (1, 1, 'TASK_ASSIGNED', 'Old', '', CURRENT_TIMESTAMP);"
        )
    finally:
        await Tortoise.close_connections()
    await apply_migrations(settings)
    await Tortoise.init(config=config)
    try:
        old = await Notification.get(id=1)
        assert (old.in_app, old.browser, old.email, old.sound, old.quiet) == (
            True,
            False,
            False,
            False,
            False,
        )
    finally:
        await Tortoise.close_connections()
