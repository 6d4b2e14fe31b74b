"""Access that ends: expiring tokens close sockets, removed members stop receiving; CORS."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import AsyncIterator

import httpx
import pytest

from pulseboard.auth import mint_token
from pulseboard.models import Role
from pulseboard.settings import Settings
from tests.live import LiveServer, serve, ws

PROJECT = 'mutation { createProject(input: {name: "P"}) { id } }'
CREATE_TASK = "mutation($p: ID!, $t: String!) { createTask(input: {projectId: $p, title: $t}) { id } }"
TASK_EVENTS = "subscription($p: ID!) { taskEvents(projectId: $p) { task { title } } }"


async def test_socket_closes_4403_when_the_token_expires(live: LiveServer) -> None:
    short = mint_token(
        live.settings.jwt_secret,
        sub="brief@example.test",
        email="brief@example.test",
        name="brief",
        role=Role.MEMBER,
        ttl=dt.timedelta(seconds=2),
    )
    async with ws(live, short) as client:
        await client.send({"type": "ping"})
        assert await client.receive() == {"type": "pong"}
        code, reason = await client.closed(within=10)
        assert code == 4403
        assert "expired" in reason.lower()


async def test_removed_member_stops_receiving_at_once(live: LiveServer) -> None:
    owner, mia = live.token("owner@example.test"), live.token("mia@example.test")
    project = (await live.gql(owner, PROJECT))["createProject"]["id"]
    mia_id = (await live.gql(mia, "{ viewer { id } }"))["viewer"]["id"]
    member = "mutation($p: ID!, $u: ID!) { %s(projectId: $p, userId: $u) { id } }"
    admin = live.token("admin@example.test", Role.ADMIN)  # an admin may add anyone
    await live.gql(admin, member % "addProjectMember", p=project, u=mia_id)
    async with ws(live, mia) as client:
        await client.subscribe("1", TASK_EVENTS, p=project)
        await client.send({"type": "ping"})
        assert await client.receive() == {"type": "pong"}
        await asyncio.sleep(0.1)
        await live.gql(owner, CREATE_TASK, p=project, t="before")
        assert (await client.next("1"))["taskEvents"]["task"]["title"] == "before"
        await live.gql(owner, member % "removeProjectMember", p=project, u=mia_id)
        await live.gql(owner, CREATE_TASK, p=project, t="after")
        ended = await client.receive()
        assert ended["type"] == "next" and ended["payload"]["errors"][0]["extensions"]["code"] == "NOT_FOUND"
        assert await client.receive() == {"id": "1", "type": "complete"}
        await client.send({"type": "ping"})
        assert await client.receive() == {"type": "pong"}  # "after" never arrived
        await client.subscribe("2", TASK_EVENTS, p=project)
        refused = await client.receive()
        assert refused["type"] == "error" and refused["payload"][0]["extensions"]["code"] == "NOT_FOUND"


@pytest.fixture
async def cors(settings: Settings) -> AsyncIterator[LiveServer]:
    async with serve(dataclasses.replace(settings, cors_origins=("https://app.example.test",))) as server:
        yield server


async def test_cors_allows_only_listed_origins(cors: LiveServer) -> None:
    preflight = {
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type",
    }
    async with httpx.AsyncClient() as http:
        allowed = await http.options(
            cors.url + "/graphql", headers={"origin": "https://app.example.test", **preflight}
        )
        refused = await http.options(
            cors.url + "/graphql", headers={"origin": "https://evil.example.test", **preflight}
        )
        simple = await http.post(
            cors.url + "/graphql",
            json={"query": "{ __typename }"},
            headers={"origin": "https://evil.example.test"},
        )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example.test"
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers
    assert "access-control-allow-origin" not in simple.headers


async def test_production_hides_graphiql_and_introspection(settings: Settings) -> None:
    production = dataclasses.replace(settings, env="production", introspection=False)
    async with serve(production) as server, httpx.AsyncClient() as http:
        page = await http.get(server.url + "/graphql", headers={"accept": "text/html"})
        schema = await http.post(server.url + "/graphql", json={"query": "{ __schema { types { name } } }"})
    assert "graphiql" not in page.text.lower()
    assert schema.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


async def test_tokens_and_the_secret_never_reach_the_logs(
    live: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    good = live.token("ada@example.test", Role.ADMIN)
    forged = mint_token(
        "another-secret-" + "z" * 40,
        sub="eve@example.test",
        email="eve@example.test",
        name="eve",
        role=Role.ADMIN,
        ttl=dt.timedelta(minutes=5),
    )
    with caplog.at_level("DEBUG"):
        await live.gql(good, PROJECT)
        async with httpx.AsyncClient() as http:
            await http.post(
                live.url + "/graphql",
                json={"query": "{ viewer { id } }"},
                headers={"authorization": f"Bearer {forged}"},
            )
        async with ws(live) as client:
            await client.send({"type": "connection_init", "payload": {"authorization": f"Bearer {forged}"}})
            await client.closed()
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert logged, "nothing was logged at all: the check would be empty"
    for secret in (good, forged, live.settings.jwt_secret):
        assert secret not in logged
