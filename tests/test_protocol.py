"""graphql-transport-ws against the running server: every close code and rule of PROTOCOL.md."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from pulseboard.auth import mint_token
from pulseboard.models import Role
from pulseboard.settings import Settings
from pulseboard.subscriptions import topics
from tests.live import PROTOCOL, WS, LiveServer, listening, serve, ws

PROJECT = 'mutation { createProject(input: {name: "Board"}) { id } }'
TASK_EVENTS = "subscription($p: ID!) { taskEvents(projectId: $p) { type task { title } } }"


async def test_connection_init_is_acknowledged(live: LiveServer) -> None:
    async with ws(live) as client:
        await client.init(live.token("a@example.test"))


async def test_connection_init_with_null_payload_is_acknowledged(live: LiveServer) -> None:
    async with ws(live) as client:
        await client.send({"type": "connection_init", "payload": None})
        assert await client.receive() == {"type": "connection_ack"}


async def test_ping_gets_pong(live: LiveServer) -> None:
    async with ws(live, live.token("a@example.test")) as client:
        await client.send({"type": "ping"})
        assert await client.receive() == {"type": "pong"}
        await client.send({"type": "ping", "payload": {"at": 1}})
        assert (await client.receive())["type"] == "pong"
        await client.send({"type": "pong"})  # unsolicited pongs are allowed and ignored
        await client.send({"type": "ping"})
        assert (await client.receive())["type"] == "pong"


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        json.dumps([1, 2]),
        json.dumps({"payload": {}}),
        json.dumps({"type": 7}),
        json.dumps({"type": "nonsense"}),
        json.dumps({"type": "ping", "payload": "text"}),
        json.dumps({"type": "ping", "payload": [1]}),
        json.dumps({"id": "", "type": "subscribe", "payload": {"query": "{ viewer { id } }"}}),
        json.dumps({"id": 5, "type": "subscribe", "payload": {"query": "{ viewer { id } }"}}),
        json.dumps({"id": "1", "type": "subscribe", "payload": {"query": 42}}),
        json.dumps(
            {"id": "1", "type": "subscribe", "payload": {"query": "{ viewer { id } }", "variables": [1]}}
        ),
        json.dumps({"id": "1", "type": "subscribe", "payload": "query"}),
        json.dumps({"id": "1", "type": "subscribe", "payload": {"query": "{ a }", "operationName": 3}}),
        json.dumps({"type": "complete"}),
    ],
)
async def test_malformed_message_closes_4400(live: LiveServer, frame: str) -> None:
    async with ws(live, live.token("a@example.test")) as client:
        await client.send(frame)
        code, reason = await client.closed()
        assert code == 4400
        assert reason


async def test_binary_frame_closes_4400(live: LiveServer) -> None:
    async with ws(live, live.token("a@example.test")) as client:
        await client.send(b'{"type": "ping"}')
        assert (await client.closed())[0] == 4400


async def test_connection_init_payload_must_be_an_object(live: LiveServer) -> None:
    async with ws(live) as client:
        await client.send({"type": "connection_init", "payload": "token"})
        assert (await client.closed())[0] == 4400


async def test_subscribe_before_ack_closes_4401(live: LiveServer) -> None:
    async with ws(live) as client:
        await client.subscribe("1", "{ viewer { id } }")
        assert (await client.closed())[0] == 4401


def _token(secret: str, ttl: dt.timedelta = dt.timedelta(hours=1), **options: str) -> str:
    return mint_token(secret, sub="x", email="x@example.test", name="x", role=Role.MEMBER, ttl=ttl, **options)


async def _refusal(live: LiveServer, authorization: object) -> tuple[int | None, str]:
    async with ws(live) as client:
        await client.send({"type": "connection_init", "payload": {"authorization": authorization}})
        return await client.closed()


# Every kind of unusable token closes 4403 "Invalid token": a client must not retry with it.
BAD_TOKENS = {
    "malformed": lambda secret: "Bearer nonsense",
    "another scheme": lambda secret: "Basic abc",
    "empty": lambda secret: "",
    "not a string": lambda secret: 42,
    "bad signature": lambda secret: "Bearer " + _token("another-secret-" + "y" * 40),
    "tampered": lambda secret: "Bearer " + _token(secret)[:-4] + "AAAA",
    "unexpected audience": lambda secret: "Bearer " + _token(secret, audience="billing"),
    "expired and badly signed": lambda secret: (
        "Bearer " + _token("another-secret-" + "y" * 40, ttl=-dt.timedelta(seconds=5))
    ),
}


@pytest.mark.parametrize("kind", BAD_TOKENS)
async def test_bad_token_closes_4403_invalid_token(live: LiveServer, kind: str) -> None:
    code, reason = await _refusal(live, BAD_TOKENS[kind](live.settings.jwt_secret))
    assert (code, reason) == (4403, "Invalid token")


async def test_expired_token_closes_4403_token_expired(live: LiveServer) -> None:
    """Told apart from a bad token: the client refreshes its token and reconnects."""
    expired = _token(live.settings.jwt_secret, ttl=-dt.timedelta(seconds=5))
    assert await _refusal(live, f"Bearer {expired}") == (4403, "Token expired")
    async with ws(live) as client:  # the same user with a fresh token is let in
        await client.init(_token(live.settings.jwt_secret))


async def test_token_expiring_on_an_open_socket_closes_4403_token_expired(live: LiveServer) -> None:
    brief = _token(live.settings.jwt_secret, ttl=dt.timedelta(seconds=2))
    async with ws(live, brief) as client:
        assert await client.closed(within=10) == (4403, "Token expired")


@pytest.fixture
async def crowded(settings: Settings) -> AsyncIterator[LiveServer]:
    crowded = dataclasses.replace(settings, connections_per_user=1, anonymous_connections_per_address=1)
    async with serve(crowded) as server:
        yield server


async def test_too_many_sockets_of_one_user_close_4403_too_many_sockets(crowded: LiveServer) -> None:
    token = crowded.token("a@example.test")
    async with ws(crowded, token):
        assert await _refusal(crowded, f"Bearer {token}") == (4403, "Too many sockets")
        async with ws(crowded, crowded.token("b@example.test")):  # another user is let in
            pass
    async with ws(crowded, token):  # the closed socket was released
        pass


async def test_too_many_sockets_without_a_token_close_4403_too_many_sockets(crowded: LiveServer) -> None:
    async with ws(crowded) as first:
        await first.send({"type": "connection_init", "payload": {}})
        assert await first.receive() == {"type": "connection_ack"}
        async with ws(crowded) as second:
            await second.send({"type": "connection_init", "payload": {}})
            assert await second.closed() == (4403, "Too many sockets")


async def test_legacy_subprotocol_closes_4406(live: LiveServer) -> None:
    async with connect(live.ws_url, subprotocols=["graphql-ws"]) as conn:  # type: ignore[list-item]
        assert (await WS(conn).closed())[0] == 4406


@pytest.fixture
async def impatient(settings: Settings) -> AsyncIterator[LiveServer]:
    async with serve(dataclasses.replace(settings, connection_init_timeout_seconds=0.3)) as server:
        yield server


async def test_no_connection_init_in_time_closes_4408(impatient: LiveServer) -> None:
    async with ws(impatient) as client:
        assert (await client.closed(within=5))[0] == 4408


async def test_duplicate_operation_id_closes_4409(live: LiveServer) -> None:
    token = live.token("a@example.test", Role.ADMIN)
    project = (await live.gql(token, PROJECT))["createProject"]["id"]
    async with ws(live, token) as client:
        await client.subscribe("dup", TASK_EVENTS, p=project)
        await client.subscribe("dup", TASK_EVENTS, p=project)
        assert (await client.closed())[0] == 4409


async def test_long_duplicate_id_still_gets_a_valid_close_frame(live: LiveServer) -> None:
    token = live.token("a@example.test", Role.ADMIN)
    project = (await live.gql(token, PROJECT))["createProject"]["id"]
    long_id = "x" * 500
    async with ws(live, token) as client:
        await client.subscribe(long_id, TASK_EVENTS, p=project)
        await client.subscribe(long_id, TASK_EVENTS, p=project)
        code, reason = await client.closed()
        assert code == 4409
        assert len(reason.encode()) <= 123


async def test_second_connection_init_closes_4429(live: LiveServer) -> None:
    async with ws(live, live.token("a@example.test")) as client:
        await client.send({"type": "connection_init"})
        assert (await client.closed())[0] == 4429


async def test_syntax_error_is_an_error_for_that_operation_only(live: LiveServer) -> None:
    async with ws(live, live.token("a@example.test")) as client:
        await client.subscribe("bad", "subscription { taskEvents(projectId: 1 {")
        message = await client.receive()
        assert message["id"] == "bad" and message["type"] == "error"
        assert message["payload"][0]["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
        await client.subscribe("good", "{ viewer { email } }")
        assert (await client.next("good")) == {"viewer": {"email": "a@example.test"}}


async def test_unknown_operation_name_is_an_error_for_that_operation(live: LiveServer) -> None:
    async with ws(live, live.token("a@example.test")) as client:
        await client.send(
            {
                "id": "1",
                "type": "subscribe",
                "payload": {"query": "query A { viewer { id } }", "operationName": "B"},
            }
        )
        message = await client.receive()
        assert message["type"] == "error" and message["id"] == "1"
        assert message["payload"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
        await client.send({"type": "ping"})
        assert (await client.receive())["type"] == "pong"


async def test_validation_error_is_an_error_message(live: LiveServer) -> None:
    async with ws(live, live.token("a@example.test")) as client:
        await client.subscribe("1", "subscription { nothingHere }")
        message = await client.receive()
        assert message["type"] == "error"
        assert message["payload"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


async def test_queries_and_mutations_over_the_socket_send_next_then_complete(live: LiveServer) -> None:
    async with ws(live, live.token("a@example.test")) as client:
        await client.subscribe("q", PROJECT)
        created = await client.next("q")
        assert created["createProject"]["id"]
        assert await client.receive() == {"id": "q", "type": "complete"}
        await client.subscribe("q", "{ projects { totalCount } }")  # the id is free again
        assert (await client.next("q")) == {"projects": {"totalCount": 1}}
        assert await client.receive() == {"id": "q", "type": "complete"}


async def test_anonymous_socket_gets_unauthenticated_per_operation(live: LiveServer) -> None:
    async with ws(live) as client:
        await client.init()
        await client.subscribe("1", "subscription { notifications { type } }")
        message = await client.receive()
        assert message["type"] == "error"
        assert message["payload"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_complete_stops_the_stream(live: LiveServer) -> None:
    token = live.token("a@example.test", Role.ADMIN)
    project = (await live.gql(token, PROJECT))["createProject"]["id"]
    create = "mutation($p: ID!, $t: String!) { createTask(input: {projectId: $p, title: $t}) { id } }"
    async with ws(live, token) as client:
        await client.subscribe("1", TASK_EVENTS, p=project)
        await client.subscribe("2", TASK_EVENTS, p=project)
        await listening(live, topics.project(int(project)))  # subscribe is not acknowledged
        await live.gql(token, create, p=project, t="first")
        received = {(await client.receive())["id"] for _ in range(2)}
        assert received == {"1", "2"}
        await client.complete("1")
        await live.gql(token, create, p=project, t="second")
        message = await client.receive()
        assert message["id"] == "2" and message["payload"]["data"]["taskEvents"]["task"]["title"] == "second"
        await client.send({"type": "ping"})
        assert await client.receive() == {"type": "pong"}  # nothing more arrived for "1"


async def test_other_origins_are_refused_unless_allowed(settings: Settings) -> None:
    allowed = dataclasses.replace(settings, allowed_origins=("https://app.example.test",))
    async with serve(allowed) as server:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(server.ws_url, subprotocols=[PROTOCOL], origin="https://evil.example.test"):  # type: ignore[list-item,arg-type]
                pass
        assert refused.value.response.status_code == 403
        async with connect(server.ws_url, subprotocols=[PROTOCOL], origin="https://app.example.test"):  # type: ignore[list-item,arg-type]
            pass
