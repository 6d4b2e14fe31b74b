"""End to end with the reference client: graphql-ws (npm, in Node) subscribes to taskEvents on a
live server and receives the events of mutations made over HTTP.

tests/js/subscribe.mjs drives the client; its packages are pinned in tests/js/package-lock.json
and installed by `make test`. Without Node or those packages these tests fail: they must not be
skipped silently."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from pulseboard.models import Role
from pulseboard.subscriptions import topics
from pulseboard.subscriptions.encoding import parse_cursor
from tests.live import LiveServer, listening
from tests.node import NodeScript, node_for, run_script

JS = Path(__file__).parent / "js"
SCRIPT = JS / "subscribe.mjs"

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


@asynccontextmanager
async def node_client(live: LiveServer, token: str, project_id: str, count: int) -> AsyncIterator[NodeScript]:
    node = node_for(JS, ["graphql-ws", "ws"])
    args = ["--url", live.ws_url, "--token", token, "--project", project_id, "--count", str(count)]
    async with run_script(node, SCRIPT, *args) as script:
        yield script


async def _outcome(client: NodeScript) -> tuple[str, str]:
    """The first line that is not READY."""
    while (line := await client.line())[0] == "READY":
        pass
    return line


async def _user_id(live: LiveServer, token: str) -> str:
    return (await live.gql(token, "{ viewer { id } }"))["viewer"]["id"]  # type: ignore[no-any-return]


async def test_graphql_ws_client_receives_the_events_of_http_mutations(live: LiveServer) -> None:
    admin = live.token("admin@example.test", Role.ADMIN)
    watcher = live.token("watcher@example.test")
    admin_id = await _user_id(live, admin)
    project = (await live.gql(admin, CREATE_PROJECT, name="E2E"))["createProject"]["id"]
    await live.gql(admin, ADD_MEMBER, p=project, u=await _user_id(live, watcher))

    async with node_client(live, watcher, project, count=5) as client:
        await client.expect("READY")
        await listening(live, topics.project(int(project)))

        created = (await live.gql(admin, CREATE_TASK, p=project))["createTask"]
        task = created["id"]
        updated = (await live.gql(admin, UPDATE_TASK, id=task))["updateTask"]
        moved = (await live.gql(admin, MOVE_TASK, id=task))["moveTask"]
        completed = (await live.gql(admin, COMPLETE_TASK, id=task))["completeTask"]
        await live.gql(admin, ADD_COMMENT, id=task)

        events = [await client.expect("EVENT") for _ in range(5)]
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
        kind, rest = await _outcome(client)
        assert kind == "CLOSED", (kind, rest)
        assert json.loads(rest)["code"] == 4403
        assert await client.exit_code() == 1, await client.stderr()


async def test_graphql_ws_client_of_a_non_member_gets_not_found(live: LiveServer) -> None:
    admin = live.token("admin@example.test", Role.ADMIN)
    outsider = live.token("outsider@example.test")
    project = (await live.gql(admin, CREATE_PROJECT, name="E2E"))["createProject"]["id"]

    async with node_client(live, outsider, project, count=1) as client:
        kind, rest = await _outcome(client)
        assert kind == "ERROR", (kind, rest)
        errors = json.loads(rest)
        assert [e["extensions"]["code"] for e in errors] == ["NOT_FOUND"], errors
        assert errors[0]["path"] == ["taskEvents"]
        assert await client.exit_code() == 1, await client.stderr()
