"""Across workers: two uvicorn processes sharing PostgreSQL and Redis, as production runs them."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator

import pytest
from websockets.exceptions import ConnectionClosed

from pulseboard.models import Role
from pulseboard.settings import Settings
from pulseboard.subscriptions.encoding import cursor
from tests.conftest import BROADCAST_URL, ON_POSTGRES
from tests.live import LiveServer, worker_processes, ws

pytestmark = pytest.mark.skipif(
    not (ON_POSTGRES and BROADCAST_URL.startswith("redis")),
    reason="several workers need PostgreSQL and Redis (the suite's second pass)",
)

CREATE_TASK = "mutation($p: ID!, $t: String!) { createTask(input: {projectId: $p, title: $t}) { id } }"
TASK_EVENTS = "subscription($p: ID!) { taskEvents(projectId: $p) { cursor task { title } } }"


@pytest.fixture
def workers(settings: Settings) -> Iterator[tuple[LiveServer, LiveServer]]:
    with worker_processes(settings, 2) as (one, two):
        yield one, two


async def _live(client: object) -> None:
    await client.send({"type": "ping"})  # type: ignore[attr-defined]
    assert await client.receive() == {"type": "pong"}  # type: ignore[attr-defined]


async def test_a_mutation_on_one_worker_reaches_subscribers_on_both(
    workers: tuple[LiveServer, LiveServer],
) -> None:
    one, two = workers
    token = one.token("ada@example.test", Role.ADMIN)
    project = (await one.gql(token, 'mutation { createProject(input: {name: "B"}) { id } }'))[
        "createProject"
    ]["id"]
    async with ws(one, token) as on_one, ws(two, token) as on_two:
        for client in (on_one, on_two):
            await client.subscribe("1", TASK_EVENTS, p=project)
            await _live(client)
        await asyncio.sleep(0.3)  # the subscribe reached Redis on both workers
        await one.gql(token, CREATE_TASK, p=project, t="from one")
        await two.gql(token, CREATE_TASK, p=project, t="from two")
        for client in (on_one, on_two):
            titles = [(await client.next("1"))["taskEvents"]["task"]["title"] for _ in range(2)]
            assert titles == ["from one", "from two"]


async def test_concurrent_mutations_on_both_workers_arrive_everywhere_in_seq_order(
    workers: tuple[LiveServer, LiveServer],
) -> None:
    one, two = workers
    token = one.token("ada@example.test", Role.ADMIN)
    project = (await one.gql(token, 'mutation { createProject(input: {name: "B"}) { id } }'))[
        "createProject"
    ]["id"]
    async with ws(one, token) as a, ws(one, token) as b, ws(two, token) as c, ws(two, token) as d:
        subscribers = (a, b, c, d)
        for client in subscribers:
            await client.subscribe("1", TASK_EVENTS, p=project)
            await _live(client)
        await asyncio.sleep(0.3)
        await asyncio.gather(
            *((one if i % 2 else two).gql(token, CREATE_TASK, p=project, t=f"t{i}") for i in range(20))
        )
        expected = [cursor(f"project:{project}", seq) for seq in range(1, 21)]
        for client in subscribers:
            received = [(await client.next("1"))["taskEvents"]["cursor"] for _ in range(20)]
            assert received == expected
            await _live(client)  # and nothing more: no duplicates


async def test_clients_of_a_killed_worker_resume_on_another_without_loss(
    workers: tuple[LiveServer, LiveServer],
) -> None:
    one, two = workers
    assert one.process is not None
    token = one.token("ada@example.test", Role.ADMIN)
    project = (await two.gql(token, 'mutation { createProject(input: {name: "B"}) { id } }'))[
        "createProject"
    ]["id"]
    async with ws(one, token) as client:
        await client.subscribe("1", TASK_EVENTS, p=project)
        await _live(client)
        await asyncio.sleep(0.3)
        await two.gql(token, CREATE_TASK, p=project, t="seen")
        last = (await client.next("1"))["taskEvents"]["cursor"]
        one.process.send_signal(signal.SIGKILL)
        with pytest.raises(ConnectionClosed):  # dropped: a killed process sends no close frame
            await client.receive()
    for i in range(10):
        await two.gql(token, CREATE_TASK, p=project, t=f"while away {i}")
    resume = """subscription($p: ID!, $after: String) {
      taskEvents(projectId: $p, after: $after) { cursor task { title } }
    }"""
    async with ws(two, token) as client:
        await client.subscribe("1", resume, p=project, after=last)
        titles = [(await client.next("1"))["taskEvents"]["task"]["title"] for _ in range(10)]
        assert titles == [f"while away {i}" for i in range(10)]
        await two.gql(token, CREATE_TASK, p=project, t="live")
        assert (await client.next("1"))["taskEvents"]["task"]["title"] == "live"
