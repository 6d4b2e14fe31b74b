"""Configurable limits, each answered with its documented code while the server keeps serving."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from websockets.asyncio.client import connect

from pulseboard.models import Role
from pulseboard.settings import Settings
from tests.live import PROTOCOL, WS, LiveServer, serve, ws


@pytest.fixture
async def strict(settings: Settings) -> AsyncIterator[LiveServer]:
    limited = dataclasses.replace(
        settings,
        max_body_bytes=2000,
        max_ws_message_bytes=4000,
        mutations_per_second=1.0,
        mutation_burst=3,
        connections_per_user=2,
        max_subscriptions_per_connection=3,
    )
    async with serve(limited) as server:
        yield server


async def _post(server: LiveServer, body: bytes, token: str | None = None) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    async with httpx.AsyncClient() as http:
        return await http.post(server.url + "/graphql", content=body, headers=headers)


async def test_http_body_over_the_limit_is_413(strict: LiveServer) -> None:
    token = strict.token("a@example.test")
    padding = "x" * 3000
    big = json.dumps({"query": "{ viewer { id } }", "variables": {"pad": padding}}).encode()
    response = await _post(strict, big, token)
    assert response.status_code == 413
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    small = json.dumps({"query": "{ viewer { email } }"}).encode()
    assert (await _post(strict, small, token)).json() == {"data": {"viewer": {"email": "a@example.test"}}}


async def test_chunked_http_body_over_the_limit_is_413(strict: LiveServer) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"query": "{ viewer { id } }", "variables": {"pad": "'
        for _ in range(10):
            yield b"y" * 500
        yield b'"}}'

    async with httpx.AsyncClient() as http:
        response = await http.post(
            strict.url + "/graphql", content=chunks(), headers={"content-type": "application/json"}
        )
    assert response.status_code == 413


async def test_websocket_message_over_the_limit_closes_1009(strict: LiveServer) -> None:
    async with ws(strict, strict.token("a@example.test")) as client:
        await client.send(
            {"id": "1", "type": "subscribe", "payload": {"query": "{ viewer { id } }" + " " * 5000}}
        )
        assert (await client.closed())[0] == 1009
    async with ws(strict, strict.token("a@example.test")) as client:  # the server is fine
        await client.send({"type": "ping"})
        assert await client.receive() == {"type": "pong"}


async def test_mutations_per_user_are_rate_limited(strict: LiveServer) -> None:
    alice, bob = strict.token("alice@example.test"), strict.token("bob@example.test")
    create = json.dumps({"query": 'mutation { createProject(input: {name: "P"}) { id } }'}).encode()
    answers = [(await _post(strict, create, alice)).json() for _ in range(5)]
    codes = [a["errors"][0]["extensions"]["code"] if "errors" in a else "OK" for a in answers]
    assert codes[:3] == ["OK", "OK", "OK"]
    assert codes[3:] == ["RATE_LIMITED", "RATE_LIMITED"]
    limited = answers[3]["errors"][0]["extensions"]
    assert limited["retryAfterSeconds"] > 0
    assert "errors" not in (await _post(strict, create, bob)).json()  # per user
    viewer = json.dumps({"query": "{ projects { totalCount } }"}).encode()
    assert (await _post(strict, viewer, alice)).json()["data"]["projects"][
        "totalCount"
    ] == 3  # reads are free
    await asyncio.sleep(1.1)
    assert "errors" not in (await _post(strict, create, alice)).json()  # the bucket refills


async def test_connections_per_user_are_limited(strict: LiveServer) -> None:
    token = strict.token("a@example.test", Role.MEMBER)
    async with ws(strict, token), ws(strict, token):
        async with ws(strict) as third:
            await third.send({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
            assert (await third.closed())[0] == 4403
        async with ws(strict, strict.token("b@example.test")):  # another user is not affected
            pass
    async with ws(strict, token), ws(strict, token):  # closed sockets are released
        pass


async def test_subscriptions_per_connection_are_limited(strict: LiveServer) -> None:
    token = strict.token("a@example.test")
    async with ws(strict, token) as client:
        for i in range(3):
            await client.subscribe(str(i), "subscription { notifications { type } }")
        await client.subscribe("4", "subscription { notifications { type } }")
        message = await client.receive()
        assert message["id"] == "4" and message["type"] == "error"
        await client.complete("0")
        await client.send({"type": "ping"})
        assert await client.receive() == {"type": "pong"}


async def test_limits_apply_to_handshake_sockets_too(strict: LiveServer) -> None:
    """A socket authenticated by the handshake's Authorization header counts like any other."""
    token = strict.token("a@example.test")
    headers = {"authorization": f"Bearer {token}"}
    async with connect(strict.ws_url, subprotocols=[PROTOCOL], additional_headers=headers) as one:  # type: ignore[list-item]
        await WS(one).init()
        async with connect(strict.ws_url, subprotocols=[PROTOCOL], additional_headers=headers) as two:  # type: ignore[list-item]
            await WS(two).init()
            async with connect(strict.ws_url, subprotocols=[PROTOCOL], additional_headers=headers) as three:  # type: ignore[list-item]
                await WS(three).send({"type": "connection_init"})
                assert (await WS(three).closed())[0] == 4403
