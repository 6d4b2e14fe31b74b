"""Idempotent mutations: a retry with the key of a request that committed gets the first answer
and changes nothing, over HTTP (`Idempotency-Key`) and over a socket (`extensions`)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any
from urllib.parse import urlsplit

import httpx

from pulseboard.models import IdempotencyKey, Task
from pulseboard.settings import Settings
from tests.helpers import Api, Person, code, serving
from tests.live import TIMEOUT, LiveServer, listening, ws

PROJECT = "mutation($name: String!) { createProject(input: {name: $name}) { id name } }"
TASK = "mutation($p: ID!, $t: String!) { createTask(input: {projectId: $p, title: $t}) { id title version } }"
TASK_EVENTS = "subscription($p: ID!) { taskEvents(projectId: $p) { type task { title } } }"


async def keyed(api: Api, who: Person, key: str | bytes, query: str, **variables: Any) -> httpx.Response:
    return await api.http.post(
        "/graphql",
        json={"query": query, "variables": variables},
        headers={"authorization": f"Bearer {who.token}", "idempotency-key": key},
    )


async def project_named(api: Api, who: Person, name: str) -> str:
    data = await api.ok(who, PROJECT, name=name)
    return str(data["createProject"]["id"])


async def test_a_retry_gets_the_first_answer_and_changes_nothing(api: Api) -> None:
    owner = await api.person()
    project = await project_named(api, owner, "Board")
    first = await keyed(api, owner, "key-1", TASK, p=project, t="Write the docs")
    again = await keyed(api, owner, "key-1", TASK, p=project, t="Write the docs")
    assert first.status_code == again.status_code == 200
    assert "errors" not in first.json() and "extensions" not in first.json()
    assert again.json()["data"] == first.json()["data"]
    assert again.json()["extensions"] == {"idempotentReplay": True}
    assert await Task.filter(project_id=int(project)).count() == 1
    # Without a key, the same request is a second task.
    await api.ok(owner, TASK, p=project, t="Write the docs")
    assert await Task.filter(project_id=int(project)).count() == 2


async def test_the_same_key_with_another_request_is_refused(api: Api) -> None:
    owner = await api.person()
    project = await project_named(api, owner, "Board")
    await keyed(api, owner, "key-2", TASK, p=project, t="One")
    reused = (await keyed(api, owner, "key-2", TASK, p=project, t="Two")).json()
    assert code(reused["errors"][0]) == "IDEMPOTENCY_KEY_REUSED"
    assert reused["data"] is None
    titles = [task.title for task in await Task.filter(project_id=int(project))]
    assert titles == ["One"]


async def test_keys_are_per_user(api: Api) -> None:
    first, second = await api.person(), await api.person()
    a = (await keyed(api, first, "shared", PROJECT, name="Mine")).json()
    b = (await keyed(api, second, "shared", PROJECT, name="Mine too")).json()
    assert a["data"]["createProject"]["name"] == "Mine"
    assert b["data"]["createProject"]["name"] == "Mine too" and "extensions" not in b


async def test_an_error_answer_is_kept_too(api: Api) -> None:
    """A refusal that is the request's own (a stale version) is its answer: a retry gets it again."""
    owner = await api.person()
    project = await project_named(api, owner, "Board")
    task = (await api.ok(owner, TASK, p=project, t="Old"))["createTask"]
    update = (
        'mutation($id: ID!, $v: Int!) { updateTask(id: $id, input: {title: "New"}, expectedVersion: $v)'
        " { title } }"
    )
    stale = (await keyed(api, owner, "key-3", update, id=task["id"], v=task["version"] + 1)).json()
    assert code(stale["errors"][0]) == "CONFLICT"
    again = (await keyed(api, owner, "key-3", update, id=task["id"], v=task["version"] + 1)).json()
    assert again["errors"] == stale["errors"] and again["extensions"] == {"idempotentReplay": True}
    assert (await Task.get(id=int(task["id"]))).title == "Old"


async def test_an_answer_that_did_nothing_is_not_kept(settings: Settings) -> None:
    """RATE_LIMITED (nothing was done): the retry with the key runs, once the bucket refills."""
    limited = dataclasses.replace(settings, mutations_per_second=2, mutation_burst=1)
    async with serving(limited) as api:
        owner = await api.person()
        await api.ok(owner, PROJECT, name="Spends the burst")
        refused = (await keyed(api, owner, "key-4", PROJECT, name="Later")).json()
        assert code(refused["errors"][0]) == "RATE_LIMITED"
        assert await IdempotencyKey.filter(key="key-4").count() == 0
        await asyncio.sleep(0.6)
        retried = (await keyed(api, owner, "key-4", PROJECT, name="Later")).json()
        assert retried["data"]["createProject"]["name"] == "Later" and "extensions" not in retried


async def test_unusable_keys_are_bad_requests(api: Api) -> None:
    owner = await api.person()
    for key in ["", "x" * 256, "spaces are not visible ascii", "ключ".encode()]:
        response = await keyed(api, owner, key, PROJECT, name="Never")
        assert response.status_code == 400, key
        assert code(response.json()["errors"][0]) == "BAD_REQUEST"
    projects = await api.ok(owner, "{ projects(first: 50) { edges { node { name } } } }")
    assert "Never" not in json.dumps(projects)


async def test_a_key_on_a_query_changes_nothing(api: Api) -> None:
    owner = await api.person()
    for _ in range(2):
        body = (await keyed(api, owner, "key-q", "{ viewer { id } }")).json()
        assert body == {"data": {"viewer": {"id": owner.id}}}


async def test_keys_expire_after_the_retention(settings: Settings) -> None:
    async with serving(dataclasses.replace(settings, idempotency_retention_seconds=0.2)) as api:
        owner = await api.person()
        first = (await keyed(api, owner, "key-5", PROJECT, name="Twice")).json()
        await asyncio.sleep(0.4)
        second = (await keyed(api, owner, "key-5", PROJECT, name="Twice")).json()
        assert second["data"]["createProject"]["id"] != first["data"]["createProject"]["id"]
        assert "extensions" not in second


async def test_concurrent_requests_with_one_key_change_once(api: Api) -> None:
    owner = await api.person()
    project = await project_named(api, owner, "Board")
    answers = await asyncio.gather(*(keyed(api, owner, "key-6", TASK, p=project, t="Once") for _ in range(6)))
    ids = {answer.json()["data"]["createTask"]["id"] for answer in answers}
    assert len(ids) == 1
    assert sum("extensions" in answer.json() for answer in answers) == 5
    assert await Task.filter(project_id=int(project)).count() == 1


async def _post_and_hang_up(
    live: LiveServer, token: str, key: str, query: str, variables: dict[str, Any]
) -> None:
    """Sends the request over a raw socket and closes it before reading any answer, as a client
    whose connection dies after sending does."""
    address = urlsplit(live.url)
    body = json.dumps({"query": query, "variables": variables}).encode()
    head = (
        f"POST /graphql HTTP/1.1\r\nHost: {address.netloc}\r\ncontent-type: application/json\r\n"
        f"authorization: Bearer {token}\r\nidempotency-key: {key}\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    _, writer = await asyncio.open_connection(address.hostname, address.port)
    writer.write(head.encode() + body)
    await writer.drain()
    writer.close()
    await writer.wait_closed()


async def test_a_retry_after_a_forced_disconnect_gets_the_committed_answer(live: LiveServer) -> None:
    token = live.token("owner@example.test")
    project = (await live.gql(token, PROJECT, name="Board"))["createProject"]["id"]
    await _post_and_hang_up(live, token, "key-7", TASK, {"p": project, "t": "Survives the hang-up"})
    async with asyncio.timeout(TIMEOUT):  # the server finishes what it got, answer unread
        while not await Task.filter(project_id=int(project)).exists():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        retried = await http.post(
            live.url + "/graphql",
            json={"query": TASK, "variables": {"p": project, "t": "Survives the hang-up"}},
            headers={"authorization": f"Bearer {token}", "idempotency-key": "key-7"},
        )
    body = retried.json()
    created = await Task.get(project_id=int(project))
    assert body["data"]["createTask"] == {"id": str(created.id), "title": created.title, "version": 1}
    assert body["extensions"] == {"idempotentReplay": True}
    assert await Task.filter(project_id=int(project)).count() == 1


async def test_a_socket_operation_carries_its_key_in_extensions(live: LiveServer) -> None:
    """Over graphql-transport-ws, and across transports: the key is the user's, not the socket's.
    Subscribers see the one change once."""
    token = live.token("owner@example.test")
    project = (await live.gql(token, PROJECT, name="Board"))["createProject"]["id"]
    variables = {"p": project, "t": "Over the socket"}
    async with ws(live, token) as watcher, ws(live, token) as writer:
        await watcher.subscribe("events", TASK_EVENTS, p=project)
        await listening(live, f"project:{project}")
        answers = []
        for n in range(2):
            payload = {"query": TASK, "variables": variables, "extensions": {"idempotencyKey": "key-8"}}
            await writer.send({"id": f"m{n}", "type": "subscribe", "payload": payload})
            message = await writer.receive()
            assert message["type"] == "next", message
            answers.append(message["payload"])
            assert (await writer.receive()) == {"id": f"m{n}", "type": "complete"}
        assert answers[1] == {**answers[0], "extensions": {"idempotentReplay": True}}
        async with httpx.AsyncClient(timeout=TIMEOUT) as http:
            over_http = await http.post(
                live.url + "/graphql",
                json={"query": TASK, "variables": variables},
                headers={"authorization": f"Bearer {token}", "idempotency-key": "key-8"},
            )
        assert over_http.json()["data"] == answers[0]["data"]
        await live.gql(token, TASK, p=project, t="Next, without a key")
        assert (await watcher.next("events"))["taskEvents"]["task"]["title"] == "Over the socket"
        assert (await watcher.next("events"))["taskEvents"]["task"]["title"] == "Next, without a key"
        bad = {"query": TASK, "variables": variables, "extensions": {"idempotencyKey": 7}}
        await writer.send({"id": "bad", "type": "subscribe", "payload": bad})
        refused = await writer.receive()
        assert refused["type"] == "error" and code(refused["payload"][0]) == "BAD_REQUEST"
    assert await Task.filter(project_id=int(project)).count() == 2
