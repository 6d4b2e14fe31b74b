"""A database fault never degrades or ends a stream: delivery retries in order, and past its bound
closes the socket with 1013, which graphql-ws clients retry.

Each test runs a server process on a PostgreSQL cluster and a redis-server of its own, which it
pauses, stops and restarts. The server runs in its own process: this process may already use
Tortoise with SQLite, and one process cannot use both."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import Iterator

import pytest
import redis

from pulseboard.models import Role
from pulseboard.settings import Settings, channel_namespace
from pulseboard.subscriptions.encoding import EventMessage, cursor, encode
from tests.live import WS, LiveServer, worker_process, ws
from tests.services import PostgresCluster, RedisServer

PROJECT = 'mutation { createProject(input: {name: "Faults"}) { id } }'
TASK = "mutation($p: ID!, $t: String!) { createTask(input: {projectId: $p, title: $t}) { id } }"
EVENTS = """subscription($p: ID!, $after: String) { taskEvents(projectId: $p, after: $after) {
  cursor type task { title } actor { name } } }"""


def _server(
    settings: Settings, postgres: PostgresCluster, broker: RedisServer, retry: float
) -> Iterator[LiveServer]:
    own = dataclasses.replace(
        settings,
        database_url=postgres.create_database("app"),
        broadcast_url=broker.url,
        delivery_retry_seconds=retry,
    )
    with worker_process(own) as server:
        yield server


@pytest.fixture
def on_private(
    settings: Settings, private_postgres: PostgresCluster, private_redis: RedisServer
) -> Iterator[LiveServer]:
    yield from _server(settings, private_postgres, private_redis, retry=20.0)


@pytest.fixture
def short_bound(
    settings: Settings, private_postgres: PostgresCluster, private_redis: RedisServer
) -> Iterator[LiveServer]:
    yield from _server(settings, private_postgres, private_redis, retry=1.0)


async def _project_with_tasks(server: LiveServer, token: str, count: int) -> str:
    project: str = (await server.gql(token, PROJECT))["createProject"]["id"]
    for n in range(count):
        await server.gql(token, TASK, p=project, t=f"t{n}")
    return project


async def _live(server: LiveServer, client: WS, token: str, project: str) -> None:
    """Subscribes and waits until an event made now arrives (the stream is live)."""
    await client.subscribe("1", EVENTS, p=project)
    await asyncio.sleep(0.3)
    await server.gql(token, TASK, p=project, t="live")
    assert (await client.next("1"))["taskEvents"]["task"]["title"] == "live"


def _events_complete(events: list[dict], titles: list[str]) -> None:
    assert [e["task"]["title"] for e in events] == titles
    assert all(e["actor"] == {"name": "ada"} for e in events), events


def _publish_by_hand(server: LiveServer, broker: RedisServer, project: str, seq: int, actor: str) -> None:
    """An event as the broker carries it, published while the database is down: only rendering
    it (its actor is a row to read) can fail."""
    task = {
        "id": 1,
        "project_id": int(project),
        "title": f"seq {seq}",
        "description": "",
        "status": "TODO",
        "position": 0,
        "priority": "MEDIUM",
        "progress": 0,
        "assignee_id": None,
        "due_at": None,
        "created_by_id": int(actor),
        "created_at": "2026-01-01T00:00:00+00:00",
        "updated_at": "2026-01-01T00:00:00+00:00",
        "completed_at": None,
        "version": 2,
    }
    topic = f"project:{project}"
    message = EventMessage(
        topic, seq, "UPDATED", {"task": task, "changes": []}, int(actor), dt.datetime.now(dt.UTC)
    )
    redis.Redis(port=broker.port).publish(channel_namespace(server.settings) + topic, encode(message))


async def test_a_restart_during_a_replay_delays_events_but_loses_and_degrades_none(
    on_private: LiveServer, private_postgres: PostgresCluster
) -> None:
    token = on_private.token("ada@example.test", Role.ADMIN)
    project = await _project_with_tasks(on_private, token, 40)
    async with ws(on_private, token) as client:
        private_postgres.pause()  # the replay's reads hang, then fail when the server restarts
        await client.subscribe("1", EVENTS, p=project, after=cursor(f"project:{project}", 0))
        await asyncio.sleep(0.3)
        await asyncio.to_thread(private_postgres.restart)
        messages = [await client.receive(within=30) for _ in range(40)]
        assert all(m["type"] == "next" and "errors" not in m["payload"] for m in messages), messages
        _events_complete([m["payload"]["data"]["taskEvents"] for m in messages], [f"t{n}" for n in range(40)])
        await on_private.gql(token, TASK, p=project, t="after")  # and it is live again
        assert (await client.next("1", within=30))["taskEvents"]["task"]["title"] == "after"


async def test_an_event_rendered_while_the_database_restarts_arrives_whole(
    on_private: LiveServer, private_postgres: PostgresCluster, private_redis: RedisServer
) -> None:
    token = on_private.token("ada@example.test", Role.ADMIN)
    actor = (await on_private.gql(token, "{ viewer { id } }"))["viewer"]["id"]
    project = await _project_with_tasks(on_private, token, 1)
    async with ws(on_private, token) as client:
        await _live(on_private, client, token, project)
        private_postgres.pause()
        _publish_by_hand(on_private, private_redis, project, seq=3, actor=actor)
        await asyncio.sleep(0.3)
        await asyncio.to_thread(private_postgres.restart)
        message = await client.receive(within=30)
        assert message["type"] == "next" and "errors" not in message["payload"], message
        _events_complete([message["payload"]["data"]["taskEvents"]], ["seq 3"])


async def test_past_the_delivery_bound_the_socket_closes_with_1013_never_complete(
    short_bound: LiveServer, private_postgres: PostgresCluster, private_redis: RedisServer
) -> None:
    token = short_bound.token("ada@example.test", Role.ADMIN)
    actor = (await short_bound.gql(token, "{ viewer { id } }"))["viewer"]["id"]
    project = await _project_with_tasks(short_bound, token, 1)
    async with ws(short_bound, token) as client:
        await _live(short_bound, client, token, project)
        await asyncio.to_thread(private_postgres.stop)
        try:
            _publish_by_hand(short_bound, private_redis, project, seq=3, actor=actor)
            code, reason = await client.closed(within=30)  # no `next` with errors, no `complete`
        finally:
            await asyncio.to_thread(private_postgres.start)
    assert code == 1013 and "try again" in reason.lower()
    # A socket opened afterwards resumes, as a retrying client's would.
    async with ws(short_bound, token) as again:
        await again.subscribe("1", EVENTS, p=project, after=cursor(f"project:{project}", 0))
        assert (await again.next("1", within=30))["taskEvents"]["task"]["title"] == "t0"


async def test_a_subscription_made_while_the_database_is_down_starts_once_it_is_back(
    on_private: LiveServer, private_postgres: PostgresCluster
) -> None:
    token = on_private.token("ada@example.test", Role.ADMIN)
    project = await _project_with_tasks(on_private, token, 3)
    async with ws(on_private, token) as client:
        await asyncio.to_thread(private_postgres.stop)
        await client.subscribe("1", EVENTS, p=project, after=cursor(f"project:{project}", 0))
        await asyncio.sleep(1.0)
        await asyncio.to_thread(private_postgres.start)
        events = [(await client.next("1", within=30))["taskEvents"] for _ in range(3)]
        _events_complete(events, ["t0", "t1", "t2"])
