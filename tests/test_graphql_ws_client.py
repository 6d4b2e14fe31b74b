"""End to end with the reference client: graphql-ws (npm, in Node) subscribes to taskEvents on a
live server and receives the events of mutations made over HTTP.

tests/js/subscribe.mjs drives the client; its packages are pinned in tests/js/package-lock.json
and installed by `make test`. Without Node or those packages these tests fail: they must not be
skipped silently."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from pulseboard.models import Role
from pulseboard.subscriptions import topics
from pulseboard.subscriptions.encoding import parse_cursor
from tests.live import LiveServer

JS = Path(__file__).parent / "js"
SCRIPT = JS / "subscribe.mjs"
TIMEOUT = 30.0

TASK = "id title status position progress"
CREATE_PROJECT = "mutation($name: String!) { createProject(input: {name: $name}) { id } }"
ADD_MEMBER = "mutation($p: ID!, $u: ID!) { addProjectMember(projectId: $p, userId: $u) { id } }"
CREATE_TASK = f'mutation($p: ID!) {{ createTask(input: {{projectId: $p, title: "Draft"}}) {{ {TASK} }} }}'
UPDATE_TASK = f"""mutation($id: ID!) {{
  updateTask(id: $id, input: {{title: "Write the e2e test", priority: HIGH}}) {{ {TASK} }}
}}"""
MOVE_TASK = f"mutation($id: ID!) {{ moveTask(id: $id, status: IN_PROGRESS, position: 0) {{ {TASK} }} }}"
COMPLETE_TASK = f"mutation($id: ID!) {{ completeTask(id: $id) {{ {TASK} }} }}"
ADD_COMMENT = 'mutation($id: ID!) { addTaskComment(taskId: $id, body: "Shipped") { id } }'


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: these tests run the graphql-ws npm client in Node 20+")
    if not (JS / "node_modules" / "graphql-ws").is_dir() or not (JS / "node_modules" / "ws").is_dir():
        pytest.fail("tests/js/node_modules is missing: run `make test` (it runs `npm ci --prefix tests/js`)")
    return node


class NodeClient:
    """subscribe.mjs running in Node; its stdout read line by line."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        assert process.stderr is not None
        self._stderr = asyncio.create_task(process.stderr.read())

    async def line(self) -> tuple[str, str]:
        """The next reported line as (kind, rest): READY, EVENT, ERROR or CLOSED."""
        assert self.process.stdout is not None
        try:
            raw = await asyncio.wait_for(self.process.stdout.readline(), TIMEOUT)
        except TimeoutError:
            raise AssertionError(f"no output from the client within {TIMEOUT} s") from None
        if not raw:
            await self.process.wait()
            raise AssertionError(
                f"client exited ({self.process.returncode}) early: {(await self._stderr).decode()}"
            )
        kind, _, rest = raw.decode().rstrip("\n").partition(" ")
        return kind, rest

    async def outcome(self) -> tuple[str, str]:
        """The first line that is not READY."""
        while (line := await self.line())[0] == "READY":
            pass
        return line

    async def ready(self) -> None:
        kind, rest = await self.line()
        assert kind == "READY", (kind, rest)

    async def events(self, count: int) -> list[dict[str, Any]]:
        found = []
        for _ in range(count):
            kind, rest = await self.line()
            assert kind == "EVENT", (kind, rest)
            found.append(json.loads(rest))
        return found

    async def exit_code(self) -> int:
        try:
            code = await asyncio.wait_for(self.process.wait(), TIMEOUT)
        except TimeoutError:
            raise AssertionError(f"the client did not exit within {TIMEOUT} s") from None
        await self._stderr
        return code

    async def stderr(self) -> str:
        return (await self._stderr).decode()

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        await self._stderr


@asynccontextmanager
async def node_client(live: LiveServer, token: str, project_id: str, count: int) -> AsyncIterator[NodeClient]:
    process = await asyncio.create_subprocess_exec(
        _node(),
        str(SCRIPT),
        "--url",
        live.ws_url,
        "--token",
        token,
        "--project",
        project_id,
        "--count",
        str(count),
        "--timeout-ms",
        str(int(TIMEOUT * 1000)),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=JS,
    )
    client = NodeClient(process)
    try:
        yield client
    finally:
        await client.stop()


async def _user_id(live: LiveServer, token: str) -> str:
    return (await live.gql(token, "{ viewer { id } }"))["viewer"]["id"]  # type: ignore[no-any-return]


async def _listening(live: LiveServer, project_id: str) -> None:
    """Until the server's stream for the project is live (the client's READY only says the
    subscribe message was sent; the protocol has no acknowledgement of a subscription)."""
    topic = topics.project(int(project_id))
    for _ in range(int(TIMEOUT / 0.02)):
        if live.hub.topics.get(topic):
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError(f"no listener on {topic} within {TIMEOUT} s: {live.hub.topics}")
    await asyncio.sleep(0.2)  # the stream reads the topic's head right after it starts listening


async def test_graphql_ws_client_receives_the_events_of_http_mutations(live: LiveServer) -> None:
    admin = live.token("admin@example.test", Role.ADMIN)
    watcher = live.token("watcher@example.test")
    admin_id = await _user_id(live, admin)
    project = (await live.gql(admin, CREATE_PROJECT, name="E2E"))["createProject"]["id"]
    await live.gql(admin, ADD_MEMBER, p=project, u=await _user_id(live, watcher))

    async with node_client(live, watcher, project, count=5) as client:
        await client.ready()
        await _listening(live, project)

        created = (await live.gql(admin, CREATE_TASK, p=project))["createTask"]
        task = created["id"]
        updated = (await live.gql(admin, UPDATE_TASK, id=task))["updateTask"]
        moved = (await live.gql(admin, MOVE_TASK, id=task))["moveTask"]
        completed = (await live.gql(admin, COMPLETE_TASK, id=task))["completeTask"]
        await live.gql(admin, ADD_COMMENT, id=task)

        events = await client.events(5)
        assert await client.exit_code() == 0, await client.stderr()

    assert [e["type"] for e in events] == ["CREATED", "UPDATED", "MOVED", "COMPLETED", "COMMENTED"]
    assert [e["task"] for e in events] == [created, updated, moved, completed, completed]
    assert created == {"id": task, "title": "Draft", "status": "TODO", "position": 0, "progress": 0}
    assert completed == {
        "id": task,
        "title": "Write the e2e test",
        "status": "DONE",
        "position": 0,
        "progress": 100,
    }
    assert [e["changes"] for e in events] == [
        [],
        [
            {"field": "title", "from": "Draft", "to": "Write the e2e test"},
            {"field": "priority", "from": "MEDIUM", "to": "HIGH"},
        ],
        [{"field": "status", "from": "TODO", "to": "IN_PROGRESS"}],
        [
            {"field": "status", "from": "IN_PROGRESS", "to": "DONE"},
            {"field": "progress", "from": "0", "to": "100"},
        ],
        [],
    ]
    assert all(e["actor"] == {"id": admin_id} for e in events)

    cursors = [e["cursor"] for e in events]
    assert len(set(cursors)) == len(cursors)
    seqs = [parse_cursor(c, topics.project(int(project))) for c in cursors]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs  # in order, none missing
    occurred = [dt.datetime.fromisoformat(e["occurredAt"]) for e in events]
    assert occurred == sorted(occurred)


async def test_graphql_ws_client_with_a_bad_token_is_closed_with_4403(live: LiveServer) -> None:
    admin = live.token("admin@example.test", Role.ADMIN)
    project = (await live.gql(admin, CREATE_PROJECT, name="E2E"))["createProject"]["id"]

    async with node_client(live, "not-a-jwt", project, count=1) as client:
        kind, rest = await client.outcome()
        assert kind == "CLOSED", (kind, rest)
        assert json.loads(rest)["code"] == 4403
        assert await client.exit_code() == 1, await client.stderr()


async def test_graphql_ws_client_of_a_non_member_gets_not_found(live: LiveServer) -> None:
    admin = live.token("admin@example.test", Role.ADMIN)
    outsider = live.token("outsider@example.test")
    project = (await live.gql(admin, CREATE_PROJECT, name="E2E"))["createProject"]["id"]

    async with node_client(live, outsider, project, count=1) as client:
        kind, rest = await client.outcome()
        assert kind == "ERROR", (kind, rest)
        errors = json.loads(rest)
        assert [e["extensions"]["code"] for e in errors] == ["NOT_FOUND"], errors
        assert errors[0]["path"] == ["taskEvents"]
        assert await client.exit_code() == 1, await client.stderr()
