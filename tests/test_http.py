"""GraphQL over HTTP (media types, status codes, refusals), /metrics, and operation logs."""

from __future__ import annotations

import asyncio
import json
import logging

import httpx
import pytest

from pulseboard.models import Role
from pulseboard.subscriptions import topics
from pulseboard.telemetry import JsonFormatter
from tests.helpers import Api
from tests.live import LiveServer, listening, ws

GRAPHQL_RESPONSE = "application/graphql-response+json"


@pytest.mark.parametrize(
    ("query", "status"),
    [("{ __typename }", 200), ("{", 400), ("{ nothing }", 400), ("query($n: Int!) { __typename }", 400)],
)
async def test_graphql_response_media_type_when_preferred(api: Api, query: str, status: int) -> None:
    response = await api.http.post("/graphql", json={"query": query}, headers={"accept": GRAPHQL_RESPONSE})
    assert response.status_code == status
    assert response.headers["content-type"].startswith(GRAPHQL_RESPONSE)
    body = response.json()
    assert ("data" in body) == (status == 200)


async def test_application_json_keeps_200_for_request_errors(api: Api) -> None:
    response = await api.http.post("/graphql", json={"query": "{"}, headers={"accept": "application/json"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"


async def test_execution_errors_are_200_with_data_under_either_media_type(api: Api) -> None:
    for accept in (GRAPHQL_RESPONSE, "application/json"):
        response = await api.http.post(
            "/graphql", json={"query": '{ task(id: "1") { id } }'}, headers={"accept": accept}
        )
        assert response.status_code == 200
        body = response.json()
        assert body["data"] is None and body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_queries_over_get(api: Api) -> None:
    response = await api.http.get("/graphql", params={"query": "{ __typename }"})
    assert response.status_code == 200 and response.json() == {"data": {"__typename": "Query"}}


async def test_mutations_over_get_are_405(api: Api) -> None:
    response = await api.http.get("/graphql", params={"query": "mutation { markAllNotificationsRead }"})
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        (b"{not json", "application/json", 400),
        (b"{}", "application/json", 400),
        (b'{"query": "{ __typename }"}', "text/plain", 415),
    ],
)
async def test_unusable_requests_get_a_4xx_graphql_error(
    api: Api, content: bytes, content_type: str, status: int
) -> None:
    response = await api.http.post("/graphql", content=content, headers={"content-type": content_type})
    assert response.status_code == status
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    assert (await api.http.post("/graphql", json={"query": "{ __typename }"})).status_code == 200


async def test_metrics_expose_operations_connections_and_events(live: LiveServer) -> None:
    token = live.token("ada@example.test", Role.ADMIN)
    project = (await live.gql(token, 'mutation Board { createProject(input: {name: "P"}) { id } }'))[
        "createProject"
    ]["id"]
    async with ws(live, token) as client:
        await client.subscribe("1", "subscription($p: ID!) { taskEvents(projectId: $p) { type } }", p=project)
        await client.send({"type": "ping"})
        assert await client.receive() == {"type": "pong"}
        await listening(live, topics.project(int(project)))
        create = 'mutation AddTask($p: ID!) { createTask(input: {projectId: $p, title: "t"}) { id } }'
        await live.gql(token, create, p=project)
        await client.next("1")
        async with httpx.AsyncClient() as http:
            text = (await http.get(live.url + "/metrics")).text
    lines = text.splitlines()

    def value(prefix: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(prefix))

    assert value("pulseboard_ws_connections") >= 1
    assert value('pulseboard_subscriptions_active{field="taskEvents"}') >= 1
    assert value('pulseboard_operations_total{field="createTask",outcome="ok",type="mutation"}') >= 1
    assert value('pulseboard_events_published_total{kind="project"}') >= 1
    assert value('pulseboard_events_delivered_total{kind="project"}') >= 1
    assert value("pulseboard_delivery_latency_seconds_count") >= 1
    assert value("pulseboard_hub_topics") >= 1


async def test_metrics_show_the_broker_and_the_publish_queue(live: LiveServer) -> None:
    """Read by the hub's sweep, once a second: an operator sees the broker is up and nothing waits."""
    await asyncio.sleep(live.hub.sweep_interval * 1.5)
    async with httpx.AsyncClient() as http:
        lines = (await http.get(live.url + "/metrics")).text.splitlines()
    assert "pulseboard_broker_up 1.0" in lines
    assert "pulseboard_publish_queue_events 0.0" in lines


async def test_one_log_line_per_operation_with_its_error_codes(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="pulseboard.operations"):
        await api.post(None, "query Who { viewer { id } }")
    [record] = [r for r in caplog.records if r.name == "pulseboard.operations"]
    entry = json.loads(JsonFormatter().format(record))
    assert entry["operation"] == "Who"
    assert entry["type"] == "query"
    assert entry["error_codes"] == ["UNAUTHENTICATED"]
    assert entry["duration_ms"] >= 0
    assert entry["user_id"] is None


async def test_subscriptions_over_http_are_refused_cleanly(api: Api) -> None:
    response = await api.http.post(
        "/graphql", json={"query": 'subscription { taskEvents(projectId: "1") { type } }'}
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x"]
)
async def test_cross_site_form_posts_cannot_mutate(api: Api, content_type: str) -> None:
    """CSRF: what a page on another site can send without a CORS preflight is refused."""
    token = api.token("ada@example.test")
    response = await api.http.post(
        "/graphql",
        content=b"query=mutation%20%7B%20markAllNotificationsRead%20%7D",
        headers={"content-type": content_type, "authorization": f"Bearer {token}"},
    )
    assert response.status_code in (400, 415)
    assert "data" not in response.json()


CREATE_PROJECT = "mutation($n: String!) { createProject(input: {name: $n}) { id name } }"
COUNT = "{ projects { totalCount } }"


async def test_a_batch_is_one_array_of_the_negotiated_media_type(live: LiveServer) -> None:
    """A batch (tests/test_batching.py) over a real socket: 200 with an answer per operation, in
    order, also where one of them alone would be a 400 under application/graphql-response+json."""
    token = live.token("ada@example.test")
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.post(
            live.url + "/graphql",
            json=[{"query": CREATE_PROJECT, "variables": {"n": "Board"}}, {"query": "{"}, {"query": COUNT}],
            headers={"authorization": f"Bearer {token}", "accept": GRAPHQL_RESPONSE},
        )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(GRAPHQL_RESPONSE)
    made, refused, counted = response.json()
    assert list(made["data"]) == ["createProject"]
    assert "data" not in refused and refused["errors"][0]["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    assert counted == {"data": {"projects": {"totalCount": 1}}}
