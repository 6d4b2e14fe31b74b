"""Presence: who is viewing a project, over real sockets, on one server and across two workers."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from contextlib import aclosing
from typing import Any

import pytest

from pulseboard.models import Event, Role, User
from pulseboard.resolvers.context import Context
from pulseboard.schema import build_schema
from pulseboard.settings import Settings
from tests.conftest import BROADCAST_URL, ON_POSTGRES
from tests.live import TIMEOUT, WS, LiveServer, http_client, worker_processes, ws
from tests.test_subscriptions import project

PRESENCE = """subscription($p: ID!) {
  presence(projectId: $p) { type user { name } viewers { user { name } taskId editing since } }
}"""
SET = """mutation($p: ID!, $t: ID, $e: Boolean! = false) {
  setPresence(projectId: $p, taskId: $t, editing: $e)
}"""
ADD = "mutation($p: ID!, $u: ID!) { addProjectMember(projectId: $p, userId: $u) { id } }"
REMOVE = "mutation($p: ID!, $u: ID!) { removeProjectMember(projectId: $p, userId: $u) { id } }"
TASK = "mutation($p: ID!) { createTask(input: {projectId: $p, title: \"T\"}) { id } }"


async def user_id(server: LiveServer, token: str) -> str:
    return (await server.gql(token, "{ viewer { id } }"))["viewer"]["id"]  # type: ignore[no-any-return]


async def board(server: LiveServer, *names: str) -> tuple[str, list[str]]:
    """A project of an admin's with members `names`; their tokens."""
    admin = server.token("root@example.test", Role.ADMIN)
    p = await project(server, admin)
    tokens = [server.token(f"{name}@example.test") for name in names]
    for token in tokens:
        await server.gql(admin, ADD, p=p, u=await user_id(server, token))
    return p, tokens


async def errors(server: LiveServer, token: str | None, query: str, **variables: Any) -> list[dict]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    async with http_client(timeout=TIMEOUT) as http:
        response = await http.post(
            server.url + "/graphql", json={"query": query, "variables": variables}, headers=headers
        )
    return response.json()["errors"]  # type: ignore[no-any-return]


def summary(event: dict) -> tuple[str, str | None, list[tuple[str, str | None, bool]]]:
    """An event as (type, who, [(name, taskId, editing) of each viewer])."""
    event = event["presence"]
    who = event["user"]["name"] if event["user"] else None
    return event["type"], who, [(v["user"]["name"], v["taskId"], v["editing"]) for v in event["viewers"]]


async def quiet(client: WS, id: str) -> None:
    """Nothing more for `id`: a ping is answered before any frame of it."""
    await asyncio.sleep(0.2)
    await client.send({"type": "ping"})
    assert await client.receive() == {"type": "pong"}


async def test_a_snapshot_then_joins_changes_and_leaves_and_nothing_is_stored(live: LiveServer) -> None:
    p, (ada, bob) = await board(live, "ada", "bob")
    task = (await live.gql(ada, TASK, p=p))["createTask"]["id"]
    events = await Event.all().count()
    async with ws(live, ada) as a:
        await a.subscribe("p", PRESENCE, p=p)
        assert summary(await a.next("p")) == ("SNAPSHOT", None, [("ada", None, False)])
        async with ws(live, bob) as b:
            await b.subscribe("p", PRESENCE, p=p)
            both = [("ada", None, False), ("bob", None, False)]
            assert summary(await b.next("p")) == ("SNAPSHOT", None, both)
            assert summary(await a.next("p")) == ("JOINED", "bob", both)
            assert (await live.gql(bob, SET, p=p, t=task, e=True))["setPresence"] is True
            changed = ("CHANGED", "bob", [("ada", None, False), ("bob", task, True)])
            assert summary(await a.next("p")) == changed
            assert summary(await b.next("p")) == changed
            await b.complete("p")
            assert summary(await a.next("p")) == ("LEFT", "bob", [("ada", None, False)])
            assert (await live.gql(bob, SET, p=p, t=task))["setPresence"] is False
        await quiet(a, "p")
    assert await Event.all().count() == events


async def test_a_users_tabs_are_one_viewer_who_leaves_with_the_last(live: LiveServer) -> None:
    p, (ada, bob) = await board(live, "ada", "bob")
    task = (await live.gql(ada, TASK, p=p))["createTask"]["id"]
    async with ws(live, ada) as a:
        await a.subscribe("p", PRESENCE, p=p)
        await a.next("p")
        async with ws(live, bob) as first:
            await first.subscribe("p", PRESENCE, p=p)
            await first.next("p")
            assert summary(await a.next("p"))[:2] == ("JOINED", "bob")
            async with ws(live, bob) as second:
                await second.subscribe("p", PRESENCE, p=p)
                assert summary(await second.next("p"))[2] == [("ada", None, False), ("bob", None, False)]
                await quiet(a, "p")  # the second tab is the same viewer
                await live.gql(bob, SET, p=p, t=task, e=True)
                assert summary(await a.next("p"))[2][1] == ("bob", task, True)
            await quiet(a, "p")  # one tab closed: bob is still there
        started = time.monotonic()
        assert summary(await a.next("p")) == ("LEFT", "bob", [("ada", None, False)])
        assert time.monotonic() - started < 1  # at once, not when the entry expires (30 s)


async def test_who_may_not_see_the_project_gets_not_found_and_the_socket_stays_open(live: LiveServer) -> None:
    p, (ada,) = await board(live, "ada")
    eve = live.token("eve@example.test")
    async with ws(live, eve) as client:
        for project_id in (p, "nope", "0", "99999"):
            await client.subscribe("p", PRESENCE, p=project_id)
            message = await client.receive()
            assert message["type"] == "error", message
            assert message["payload"][0]["extensions"]["code"] == "NOT_FOUND"
        await quiet(client, "p")
    assert [e["extensions"]["code"] for e in await errors(live, eve, SET, p=p)] == ["NOT_FOUND"]
    assert [e["extensions"]["code"] for e in await errors(live, ada, SET, p="nope")] == ["NOT_FOUND"]
    assert [e["extensions"]["code"] for e in await errors(live, None, SET, p=p)] == ["UNAUTHENTICATED"]


async def test_bad_tasks_and_editing_without_a_task_are_bad_user_input(live: LiveServer) -> None:
    p, (ada,) = await board(live, "ada")
    other = await project(live, ada, "Other")
    elsewhere = (await live.gql(ada, TASK, p=other))["createTask"]["id"]
    for task in ("x", "0", "99999", elsewhere):
        [error] = await errors(live, ada, SET, p=p, t=task)
        assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "taskId"}, task
    [error] = await errors(live, ada, SET, p=p, e=True)
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "editing"}
    # Valid, but nothing open to set it on: a no-op.
    assert (await live.gql(ada, SET, p=p))["setPresence"] is False


async def test_a_removed_member_leaves_and_sees_no_more(live: LiveServer) -> None:
    p, (ada, bob, cy) = await board(live, "ada", "bob", "cy")
    admin = live.token("root@example.test", Role.ADMIN)
    async with ws(live, ada) as a, ws(live, bob) as b:
        await a.subscribe("p", PRESENCE, p=p)
        await a.next("p")
        await b.subscribe("p", PRESENCE, p=p)
        await b.next("p")
        await a.next("p")
        await live.gql(admin, REMOVE, p=p, u=await user_id(live, bob))
        assert summary(await a.next("p")) == ("LEFT", "bob", [("ada", None, False)])
        # bob's stream ends as taskEvents' does: an error for the operation, then complete.
        ended = await b.receive()
        assert ended["type"] == "next" and ended["payload"]["errors"][0]["extensions"]["code"] == "NOT_FOUND"
        assert await b.receive() == {"id": "p", "type": "complete"}
        async with ws(live, cy) as c:
            await c.subscribe("p", PRESENCE, p=p)
            await c.next("p")
            assert summary(await a.next("p"))[:2] == ("JOINED", "cy")
            await quiet(b, "p")  # bob is told nothing of cy


async def test_the_strawberry_path_streams_and_ends_on_removal(live: LiveServer) -> None:
    p, (ada,) = await board(live, "ada")
    admin = live.token("root@example.test", Role.ADMIN)
    schema = build_schema(live.settings)
    viewer = await User.get(id=int(await user_id(live, ada)))
    refused: Any = await schema.subscribe(
        PRESENCE, variable_values={"p": "nope"}, context_value=Context(live.settings, viewer=viewer)
    )
    async with aclosing(refused):
        first = await asyncio.wait_for(anext(refused), TIMEOUT)
        assert [e.extensions["code"] for e in first.errors] == ["NOT_FOUND"]
    stream: Any = await schema.subscribe(
        PRESENCE, variable_values={"p": p}, context_value=Context(live.settings, viewer=viewer)
    )
    async with aclosing(stream):
        first = await asyncio.wait_for(anext(stream), TIMEOUT)
        assert summary(first.data) == ("SNAPSHOT", None, [("ada", None, False)])
        await live.gql(admin, REMOVE, p=p, u=str(viewer.id))
        ended = await asyncio.wait_for(anext(stream), TIMEOUT)
        assert [e.extensions["code"] for e in ended.errors] == ["NOT_FOUND"]


TTL = 2.0


@pytest.fixture
def workers(settings: Settings) -> Iterator[tuple[LiveServer, LiveServer]]:
    with worker_processes(settings, 2, env={"PULSEBOARD_PRESENCE_TTL_SECONDS": str(TTL)}) as (one, two):
        yield one, two


@pytest.mark.skipif(
    not (ON_POSTGRES and BROADCAST_URL.startswith("redis")),
    reason="several workers need PostgreSQL and Redis (the suite's second pass)",
)
async def test_viewers_on_two_workers_see_each_other_and_a_killed_workers_vanish(
    workers: tuple[LiveServer, LiveServer],
) -> None:
    one, two = workers
    assert two.process is not None
    p, (ada, bob) = await board(one, "ada", "bob")
    task = (await one.gql(ada, TASK, p=p))["createTask"]["id"]
    async with ws(one, ada) as a, ws(two, bob) as b:
        await a.subscribe("p", PRESENCE, p=p)
        assert summary(await a.next("p"))[2] == [("ada", None, False)]
        await b.subscribe("p", PRESENCE, p=p)  # worker two knew nothing: it asks the others
        assert summary(await b.next("p"))[2] == [("ada", None, False), ("bob", None, False)]
        assert summary(await a.next("p"))[:2] == ("JOINED", "bob")
        # Set through worker one, for bob's subscription on worker two.
        assert (await one.gql(bob, SET, p=p, t=task, e=True))["setPresence"] is True
        changed = ("CHANGED", "bob", [("ada", None, False), ("bob", task, True)])
        assert summary(await a.next("p")) == changed
        assert summary(await b.next("p")) == changed
        await asyncio.sleep(TTL)  # beats keep bob present past the TTL
        await quiet(a, "p")
        two.process.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        assert summary(await a.next("p")) == ("LEFT", "bob", [("ada", None, False)])
        assert time.monotonic() - killed < TTL * 1.5
