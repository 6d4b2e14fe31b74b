"""Automatic persisted queries over HTTP POST, HTTP GET and the socket (Apollo's protocol)."""

from __future__ import annotations

import hashlib
import json

from pulseboard.models import Role
from tests.helpers import Api
from tests.live import LiveServer, ws

QUERY = "query Me { viewer { email } }"
DIGEST = hashlib.sha256(QUERY.encode()).hexdigest()
PERSISTED = {"persistedQuery": {"version": 1, "sha256Hash": DIGEST}}


async def test_unknown_hash_then_document_then_hash_alone(api: Api) -> None:
    headers = {"authorization": f"Bearer {api.token('ada@example.test')}"}
    miss = await api.http.post("/graphql", json={"extensions": PERSISTED}, headers=headers)
    assert miss.status_code == 200
    assert miss.json()["errors"][0] == {
        "message": "PersistedQueryNotFound",
        "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"},
    }
    full = await api.http.post("/graphql", json={"query": QUERY, "extensions": PERSISTED}, headers=headers)
    assert full.json() == {"data": {"viewer": {"email": "ada@example.test"}}}
    by_hash = await api.http.post("/graphql", json={"extensions": PERSISTED}, headers=headers)
    assert by_hash.json() == {"data": {"viewer": {"email": "ada@example.test"}}}
    by_get = await api.http.get("/graphql", params={"extensions": json.dumps(PERSISTED)}, headers=headers)
    assert by_get.json() == {"data": {"viewer": {"email": "ada@example.test"}}}


async def test_a_hash_that_does_not_match_the_document_is_refused(api: Api) -> None:
    wrong = {"persistedQuery": {"version": 1, "sha256Hash": "0" * 64}}
    response = await api.http.post("/graphql", json={"query": QUERY, "extensions": wrong})
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    unknown_version = {"persistedQuery": {"version": 2, "sha256Hash": DIGEST}}
    response = await api.http.post("/graphql", json={"query": QUERY, "extensions": unknown_version})
    assert response.status_code == 400


async def test_persisted_queries_over_the_socket(live: LiveServer) -> None:
    token = live.token("ada@example.test", Role.ADMIN)
    async with ws(live, token) as client:
        await client.send({"id": "1", "type": "subscribe", "payload": {"extensions": PERSISTED}})
        miss = await client.receive()
        assert (
            miss["type"] == "error"
            and miss["payload"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
        )
        await client.send(
            {"id": "2", "type": "subscribe", "payload": {"query": QUERY, "extensions": PERSISTED}}
        )
        assert (await client.next("2")) == {"viewer": {"email": "ada@example.test"}}
        assert await client.receive() == {"id": "2", "type": "complete"}
        await client.send({"id": "3", "type": "subscribe", "payload": {"extensions": PERSISTED}})
        assert (await client.next("3")) == {"viewer": {"email": "ada@example.test"}}
