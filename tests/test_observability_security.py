"""Logs and metrics under hostile clients: no forged log lines, no open or inflatable /metrics."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import re
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import httpx
import pytest
from graphql import parse

from pulseboard import telemetry
from pulseboard.app import create_app
from pulseboard.schema import schema
from pulseboard.schema.documents import root_fields, root_selections
from pulseboard.settings import Settings
from tests.helpers import Api

FORGED_LINE = "2030-01-01 00:00:00,000 INFO pulseboard.operations: mutation Admin 1.0ms user=1 errors=-"
HOSTILE = "a\rb\x1b[31mc\x00d\x7fe\x85f\u2028g\u2029h\ti\x1cj"
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
METRICS_TOKEN = "metrics-" + "m" * 40
LABEL = re.compile(r'field="([^"]*)"')


@pytest.fixture
def operations_text_log() -> Iterator[io.StringIO]:
    """What the text format writes for pulseboard.operations, as a string."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(telemetry.formatter("text"))
    log = logging.getLogger("pulseboard.operations")
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


def record(message: str, *args: object, exc_info: bool = False) -> logging.LogRecord:
    return logging.LogRecord(
        "pulseboard.operations",
        logging.INFO,
        __file__,
        1,
        message,
        args,
        sys.exc_info() if exc_info else None,
    )


async def test_a_forged_operation_name_stays_on_one_text_log_line(
    api: Api, operations_text_log: io.StringIO
) -> None:
    # A document that does not parse is still logged, with the operationName as the client sent it.
    forged = "Who\n" + FORGED_LINE
    response = await api.http.post("/graphql", json={"query": "{", "operationName": forged})
    assert response.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    output = operations_text_log.getvalue()
    [line] = output.splitlines()
    assert "Who\\n" + FORGED_LINE in line
    assert line.endswith("errors=GRAPHQL_PARSE_FAILED")


def test_the_text_format_escapes_every_control_character() -> None:
    entry = record("op %s done", HOSTILE)
    line = telemetry.formatter("text").format(entry)
    assert len(line.splitlines()) == 1 and not CONTROL.search(line)
    for escaped in ("\\r", "\\x1b[31m", "\\x00", "\\x7f", "\\x85", "\\u2028", "\\u2029", "\\t", "\\x1c"):
        assert escaped in line
    assert entry.getMessage() == f"op {HOSTILE} done"  # other handlers see the record as logged


def test_the_text_format_keeps_the_servers_traceback_multi_line() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        line = telemetry.formatter("text").format(record("failed %s", "x\ny", exc_info=True))
    first, *rest = line.splitlines()
    assert first.endswith("failed x\\ny")
    assert rest[0] == "Traceback (most recent call last):" and rest[-1] == "RuntimeError: boom"


def test_the_json_format_is_one_line_per_record() -> None:
    try:
        raise RuntimeError("boom\n" + FORGED_LINE)
    except RuntimeError:
        line = telemetry.formatter("json").format(
            record("op %s", HOSTILE + "\n" + FORGED_LINE, exc_info=True)
        )
    assert len(line.splitlines()) == 1 and not CONTROL.search(line)
    entry = json.loads(line)
    assert entry["message"] == f"op {HOSTILE}\n{FORGED_LINE}"
    assert entry["exception"].endswith(FORGED_LINE)


@asynccontextmanager
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


@pytest.mark.parametrize("env", ["development", "production"])
async def test_metrics_need_the_token_when_one_is_set(settings: Settings, env: str) -> None:
    async with client(dataclasses.replace(settings, env=env, metrics_token=METRICS_TOKEN)) as http:
        refused = [
            await http.get("/metrics"),
            await http.get("/metrics", headers={"authorization": "Bearer wrong"}),
            await http.get("/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}x"}),
            await http.get("/metrics", headers={"authorization": f"Basic {METRICS_TOKEN}"}),
            await http.get("/metrics", headers={"authorization": METRICS_TOKEN}),
            await http.get("/metrics", headers={"authorization": b"Bearer \xe9"}),
        ]
        allowed = await http.get("/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"})
    for response in refused:
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert "pulseboard_" not in response.text
    assert allowed.status_code == 200
    assert allowed.headers["content-type"] == telemetry.CONTENT_TYPE
    assert "pulseboard_ws_connections" in allowed.text


async def test_production_without_a_token_has_no_metrics(settings: Settings) -> None:
    async with client(dataclasses.replace(settings, env="production", introspection=False)) as http:
        response = await http.get("/metrics", headers={"authorization": "Bearer anything"})
        unknown = await http.get("/no-such-path")
    assert response.status_code == 404
    assert (response.text, response.headers["content-type"]) == (
        unknown.text,
        unknown.headers["content-type"],
    )


async def test_development_without_a_token_keeps_metrics_open(api: Api) -> None:
    response = await api.http.get("/metrics")
    assert response.status_code == 200 and "pulseboard_operations_total" in response.text


def operation_labels(exposition: str) -> set[str]:
    metrics = ("pulseboard_operations_total{", "pulseboard_operation_duration_seconds_count{")
    return {
        value for line in exposition.splitlines() if line.startswith(metrics) for value in LABEL.findall(line)
    }


def field_total(field: str) -> float:
    """The operations counted under `field`, over every type and outcome."""
    return sum(
        sample.value
        for metric in telemetry.REGISTRY.collect()
        if metric.name == "pulseboard_operations"
        for sample in metric.samples
        if sample.name == "pulseboard_operations_total" and sample.labels["field"] == field
    )


async def test_client_operation_names_mint_no_metric_labels(api: Api) -> None:
    graphql = schema._schema
    roots = (graphql.query_type, graphql.mutation_type, graphql.subscription_type)
    allowed = {name for root in roots if root is not None for name in root.fields}
    allowed |= {"__typename", "__schema", "__type", "invalid", "other"}
    before = {field: field_total(field) for field in ("__typename", "invalid", "viewer")}
    tag = uuid.uuid4().hex[:8]
    names = [f"Client{tag}N{i}" for i in range(300)]
    for i, name in enumerate(names):
        query = (
            f"query {name} {{ __typename }}",  # valid
            f"query {name} {{ made{tag}up{i} }}",  # parses, fails validation
            "{",  # does not parse; the operationName is still the client's
            f"query {name} {{ ...Root }} fragment Root on Query {{ viewer {{ id }} }}",
        )[i % 4]
        response = await api.http.post("/graphql", json={"query": query, "operationName": name})
        assert response.status_code == 200, response.text
    text = (await api.http.get("/metrics")).text
    labels = operation_labels(text)
    assert labels and labels <= allowed, labels - allowed
    assert tag not in text  # neither the names nor the made-up fields
    assert field_total("__typename") - before["__typename"] == 75
    assert field_total("invalid") - before["invalid"] == 150
    assert field_total("viewer") - before["viewer"] == 75


@pytest.mark.parametrize(
    ("document", "operation", "first", "count"),
    [
        ("{ viewer { id } projects { totalCount } }", None, "viewer", 2),
        ("query A { viewer { id } } query B { __typename }", "B", "__typename", 1),
        ("query A { viewer { id } }", "Missing", None, 0),
        ("query Q { ...F } fragment F on Query { ...G } fragment G on Query { tasks }", "Q", "tasks", 1),
        ("query Q { ... on Query { notifications } }", None, "notifications", 1),
        ("query Q { ...Nowhere }", None, None, 0),
        ("query Q { ...F } fragment F on Query { ...F }", None, None, 0),  # a cycle (fails validation)
        (
            "{ a: viewer { id } b: viewer { id } ...F ...F } fragment F on Query { a: viewer { id } }",
            None,
            "viewer",
            2,
        ),
    ],
)
def test_root_selections_walk_fragments_once_and_pick_the_named_operation(
    document: str, operation: str | None, first: str | None, count: int
) -> None:
    found = next(root_selections(parse(document), operation), None)
    assert (found.name.value if found else None) == first
    assert root_fields(parse(document), operation) == count
