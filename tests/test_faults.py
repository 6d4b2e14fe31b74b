"""Faults caused for real: the broker dies and comes back while mutations and subscribers run."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator

import pytest
from tortoise import timezone

from pulseboard.models import Role
from pulseboard.settings import Settings, channel_namespace
from pulseboard.subscriptions.encoding import EventMessage, cursor, encode
from tests.live import LiveServer, http_client, listening, serve, ws
from tests.services import RedisServer

CREATE_TASK = "mutation($p: ID!, $t: String!) { createTask(input: {projectId: $p, title: $t}) { id } }"
TASK_EVENTS = "subscription($p: ID!) { taskEvents(projectId: $p) { cursor } }"


@pytest.fixture
def broker() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    if server.process is not None and server.process.poll() is None:
        server.kill()


async def _ready(url: str) -> int:
    async with http_client() as http:
        return (await http.get(url + "/readyz")).status_code


async def test_redis_restart_mid_stream_loses_nothing(settings: Settings, broker: RedisServer) -> None:
    async with serve(dataclasses.replace(settings, broadcast_url=broker.url)) as live:
        token = live.token("ada@example.test", Role.ADMIN)
        project = (await live.gql(token, 'mutation { createProject(input: {name: "B"}) { id } }'))[
            "createProject"
        ]["id"]
        assert await _ready(live.url) == 200
        async with ws(live, token) as one, ws(live, token) as two, ws(live, token) as three:
            subscribers = (one, two, three)
            for client in subscribers:
                await client.subscribe("1", TASK_EVENTS, p=project)
                await client.send({"type": "ping"})
                assert await client.receive() == {"type": "pong"}
            await asyncio.sleep(0.3)

            async def write(count: int) -> None:
                for i in range(count):
                    await live.gql(token, CREATE_TASK, p=project, t=f"t{i}")
                    await asyncio.sleep(0.02)

            await write(10)
            broker.kill()
            await write(15)  # mutations keep committing while the broker is down
            assert await _ready(live.url) == 503
            broker.start()
            # Nothing new is published: what was committed during the outage still arrives.
            for client in subscribers:
                received = [(await client.next("1", within=15))["taskEvents"]["cursor"] for _ in range(25)]
                assert received == [cursor(f"project:{project}", seq) for seq in range(1, 26)]
            await write(15)
            for client in subscribers:
                received = [(await client.next("1", within=15))["taskEvents"]["cursor"] for _ in range(15)]
                assert received == [cursor(f"project:{project}", seq) for seq in range(26, 41)]
                await client.send({"type": "ping"})
                assert await client.receive() == {"type": "pong"}  # and no duplicates after
            for _ in range(100):
                if await _ready(live.url) == 200:
                    break
                await asyncio.sleep(0.1)
            assert await _ready(live.url) == 200


async def test_ready_on_the_default_in_process_broker(live: LiveServer) -> None:
    assert await _ready(live.url) == 200


async def test_deployments_sharing_a_broker_do_not_hear_each_other(live: LiveServer) -> None:
    """Channels are namespaced per database: an event of another deployment's project 1 on the
    same Redis, or a message whose topic does not match its channel, never reaches anyone."""
    token = live.token("ada@example.test", Role.ADMIN)
    project = (await live.gql(token, 'mutation { createProject(input: {name: "B"}) { id } }'))[
        "createProject"
    ]["id"]
    topic = f"project:{project}"
    foreign = EventMessage(topic, 1, "CREATED", {"task": {}, "changes": []}, None, timezone.now())
    async with ws(live, token) as client:
        await client.subscribe(
            "1", "subscription($p: ID!) { taskEvents(projectId: $p) { task { title } } }", p=project
        )
        await listening(live, topic)
        await live.hub.broadcast.publish("pulseboard:another-deployment:" + topic, encode(foreign))
        await live.hub.broadcast.publish(
            live.hub.namespace + topic, encode(dataclasses.replace(foreign, topic="project:999"))
        )
        await live.gql(token, CREATE_TASK, p=project, t="ours")
        assert (await client.next("1"))["taskEvents"]["task"]["title"] == "ours"
    assert channel_namespace(live.settings) == live.hub.namespace
    other = dataclasses.replace(live.settings, database_url=live.settings.database_url + "-other")
    assert channel_namespace(other) != live.hub.namespace
