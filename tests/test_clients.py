"""End to end with real GraphQL client libraries against a live server: Apollo Client 4 and urql 6
(npm, in Node) and gql 4 (Python). Each runs a paginated query and a mutation over HTTP and a
taskEvents subscription over graphql-transport-ws that receives the mutation's event; Apollo also
reads the task back from its normalized cache.

tests/clients/{apollo,urql}.mjs drive the Node clients; their packages are pinned in
tests/clients/package-lock.json (`npm ci --prefix tests/clients`). Without Node or those packages
these tests fail: they must not be skipped silently."""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gql import Client, GraphQLRequest
from gql.transport.httpx import HTTPXAsyncTransport
from gql.transport.websockets import WebsocketsTransport

from pulseboard.models import Role
from pulseboard.subscriptions import topics
from tests.live import LiveServer, listening
from tests.node import node_for, run_script

CLIENTS = Path(__file__).parent / "clients"
PACKAGES = ("@apollo/client", "@urql/core", "graphql", "graphql-ws", "rxjs", "ws")
TIMEOUT = 30.0
NEW_TITLE = "Renamed by the client"

CREATE_PROJECT = "mutation($name: String!) { createProject(input: {name: $name}) { id } }"
ADD_MEMBER = "mutation($p: ID!, $u: ID!) { addProjectMember(projectId: $p, userId: $u) { id } }"
CREATE_TASK = "mutation($p: ID!, $t: String!) { createTask(input: {projectId: $p, title: $t}) { id } }"

TASKS = """query Tasks($projectId: ID!, $first: Int, $after: String) {
  tasks(projectId: $projectId, first: $first, after: $after) {
    edges { cursor node { id title status position version } }
    pageInfo { hasNextPage endCursor }
  }
}"""
UPDATE_TASK = """mutation UpdateTask($id: ID!, $title: String!) {
  updateTask(id: $id, input: {title: $title}) { id title version }
}"""
TASK_EVENTS = """subscription TaskEvents($projectId: ID!) {
  taskEvents(projectId: $projectId) {
    cursor type task { id title status position version } changes { field from to }
  }
}"""


@dataclass
class Board:
    """A project with three tasks (Task 1..3, TODO, positions 0..2) and a member who watches it."""

    project: str
    tasks: list[str]
    token: str


async def _board(live: LiveServer) -> Board:
    admin = live.token("admin@example.test", Role.ADMIN)
    member = live.token("member@example.test")
    member_id = (await live.gql(member, "{ viewer { id } }"))["viewer"]["id"]
    project = (await live.gql(admin, CREATE_PROJECT, name="Clients"))["createProject"]["id"]
    await live.gql(admin, ADD_MEMBER, p=project, u=member_id)
    tasks = [
        (await live.gql(admin, CREATE_TASK, p=project, t=f"Task {n}"))["createTask"]["id"] for n in (1, 2, 3)
    ]
    return Board(project, tasks, member)


def _assert_pages(first: dict[str, Any], second: dict[str, Any], board: Board) -> None:
    assert first["ids"] == board.tasks[:2]
    assert first["titles"] == ["Task 1", "Task 2"]
    assert first["pageInfo"]["hasNextPage"] is True
    assert first["pageInfo"]["endCursor"]
    assert second["ids"] == board.tasks[2:]
    assert second["titles"] == ["Task 3"]
    assert second["pageInfo"]["hasNextPage"] is False


def _assert_event(event: dict[str, Any], task_id: str, version: int) -> None:
    assert event["type"] == "UPDATED", event
    assert event["task"] == {
        "id": task_id,
        "title": NEW_TITLE,
        "status": "TODO",
        "position": 0,
        "version": version,
        **({"__typename": "Task"} if "__typename" in event["task"] else {}),
    }
    changes = [{k: v for k, v in c.items() if k != "__typename"} for c in event["changes"]]
    assert changes == [{"field": "title", "from": "Task 1", "to": NEW_TITLE}]
    assert event["cursor"]


# Node: Apollo Client 4 and urql 6.


async def _run_node(live: LiveServer, script: str) -> tuple[Board, dict[str, Any]]:
    """Runs the script through its whole conversation; what it printed, by kind."""
    board = await _board(live)
    node = node_for(CLIENTS, PACKAGES)
    args = ["--http-url", live.url + "/graphql", "--ws-url", live.ws_url, "--token", board.token]
    args += ["--project", board.project, "--task", board.tasks[0], "--title", NEW_TITLE]
    async with run_script(node, CLIENTS / script, *args) as client:
        pages = [await client.expect("PAGE"), await client.expect("PAGE")]
        await client.expect("READY")
        await listening(live, topics.project(int(board.project)))
        await client.send("GO")
        out = {
            "pages": pages,
            "mutated": await client.expect("MUTATED"),
            "event": await client.expect("EVENT"),
        }
        if script == "apollo.mjs":
            out["cache"] = await client.expect("CACHE")
        assert await client.exit_code() == 0, await client.stderr()
    return board, out


async def test_apollo_client_split_link_pages_mutates_subscribes_and_normalizes(live: LiveServer) -> None:
    assert len(live.app.state.persisted) == 0  # type: ignore[union-attr]
    board, out = await _run_node(live, "apollo.mjs")
    # Apollo's persisted-query link sent hashes first; the server kept each document it then got.
    assert len(live.app.state.persisted) >= 2  # type: ignore[union-attr]

    _assert_pages(out["pages"][0], out["pages"][1], board)
    assert out["pages"][0]["typenames"] == ["Task"]  # Apollo adds __typename, the cache keys on it
    assert out["mutated"]["id"] == board.tasks[0]
    _assert_event(out["event"], board.tasks[0], out["mutated"]["version"])
    assert out["event"]["task"]["__typename"] == "Task"
    # The mutation did not select the title: the event's task was normalized onto Task:<id>, and the
    # cached first page (which holds a reference to it) sees the new title too.
    assert out["cache"] == {
        "id": f"Task:{board.tasks[0]}",
        "fragment": {"__typename": "Task", "id": board.tasks[0], "title": NEW_TITLE, "version": 2},
        "firstPageTitles": [NEW_TITLE, "Task 2"],
    }


async def test_urql_pages_mutates_and_subscribes_over_graphql_ws(live: LiveServer) -> None:
    board, out = await _run_node(live, "urql.mjs")

    _assert_pages(out["pages"][0], out["pages"][1], board)
    assert out["pages"][0]["typenames"] == ["Task"]
    assert out["mutated"] == {"id": board.tasks[0], "title": NEW_TITLE, "version": 2}
    _assert_event(out["event"], board.tasks[0], version=2)


# Python: gql 4.


def _page(data: dict[str, Any]) -> dict[str, Any]:
    edges = data["tasks"]["edges"]
    return {
        "ids": [e["node"]["id"] for e in edges],
        "titles": [e["node"]["title"] for e in edges],
        "pageInfo": data["tasks"]["pageInfo"],
    }


async def test_gql_pages_and_mutates_over_http_and_subscribes_over_graphql_transport_ws(
    live: LiveServer,
) -> None:
    board = await _board(live)
    http = HTTPXAsyncTransport(
        url=live.url + "/graphql", headers={"authorization": f"Bearer {board.token}"}, timeout=TIMEOUT
    )
    ws = WebsocketsTransport(
        url=live.ws_url,
        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
        init_payload={"authorization": f"Bearer {board.token}"},
    )
    async with Client(transport=http) as session, Client(transport=ws) as ws_session:
        page = {"projectId": board.project, "first": 2}
        first = _page(await session.execute(GraphQLRequest(TASKS, variable_values=page)))
        after = first["pageInfo"]["endCursor"]
        second = _page(await session.execute(GraphQLRequest(TASKS, variable_values={**page, "after": after})))
        _assert_pages(first, second, board)

        events = GraphQLRequest(TASK_EVENTS, variable_values={"projectId": board.project})

        async def first_event() -> dict[str, Any]:
            async with aclosing(ws_session.subscribe(events)) as stream:
                async for result in stream:
                    return result["taskEvents"]
            raise AssertionError("the server completed the subscription before the event")

        event = asyncio.create_task(first_event())
        try:
            await listening(live, topics.project(int(board.project)))
            update = GraphQLRequest(UPDATE_TASK, variable_values={"id": board.tasks[0], "title": NEW_TITLE})
            mutated = (await session.execute(update))["updateTask"]
            received = await asyncio.wait_for(event, TIMEOUT)
        finally:
            event.cancel()

    assert ws.subprotocol == WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL
    assert mutated == {"id": board.tasks[0], "title": NEW_TITLE, "version": 2}
    _assert_event(received, board.tasks[0], version=2)
