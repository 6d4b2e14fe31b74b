"""`serve --workers N`: every worker shuts down gracefully, logs in the configured format and
counts in one /metrics; and the database pool bounds how long a request waits for a connection."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from tortoise import connections

from pulseboard import pool
from pulseboard.models import Role
from pulseboard.settings import Settings, SettingsError, tortoise_config
from tests.conftest import BROADCAST_URL, ON_POSTGRES
from tests.helpers import serving
from tests.live import LiveServer, http_client, worker_process, ws

several_workers = pytest.mark.skipif(
    not (ON_POSTGRES and BROADCAST_URL.startswith("redis")),
    reason="several workers need PostgreSQL and Redis (the suite's second pass)",
)
on_postgres = pytest.mark.skipif(not ON_POSTGRES, reason="the pool and its timeouts are PostgreSQL's")

TASK_EVENTS = "subscription($p: ID!) { taskEvents(projectId: $p) { type } }"


@contextmanager
def two_workers(settings: Settings, **env: str) -> Iterator[tuple[LiveServer, Path]]:
    """`python -m pulseboard serve --workers 2`, logging at INFO in JSON to a file: the server
    and the path of its log."""
    logging = {
        "PULSEBOARD_LOG_LEVEL": "INFO",
        "PULSEBOARD_LOG_FORMAT": "json",
        "PULSEBOARD_OVERLOAD_LAG_MS": "0",
    }
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "server.log"
        with worker_process(settings, args=("--workers", "2"), env={**logging, **env}, log=path) as server:
            yield server, path


def records(path: Path) -> list[dict[str, Any]]:
    """The log's lines, each of which must be one JSON object."""
    lines = path.read_text().splitlines()
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON log line: {line!r}") from None
    return parsed


async def served_by_both(server: LiveServer, path: Path, send: int = 200) -> int:
    """Sends `{ __typename }` over fresh connections until access lines show both workers served
    some (at least 10); how many were sent."""
    sent = 0
    while sent < send:
        async with http_client(timeout=10) as http:
            response = await http.post(server.url + "/graphql", json={"query": "{ __typename }"})
        assert response.status_code == 200, response.text
        sent += 1
        if sent >= 10 and len(worker_pids(path, '"POST /graphql')) >= 2:
            return sent
    raise AssertionError(f"one worker served all {sent} requests: {worker_pids(path, 'POST')}")


def worker_pids(path: Path, message: str) -> set[int]:
    return {r["pid"] for r in records(path) if r["logger"] == "uvicorn.access" and message in r["message"]}


def samples(exposition: str, name: str) -> list[float]:
    pattern = re.compile(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$")
    return [float(m.group(1)) for line in exposition.splitlines() if (m := pattern.match(line))]


@several_workers
async def test_sigterm_with_two_workers_closes_sockets_1001_and_finishes_in_flight_requests(
    settings: Settings,
) -> None:
    with two_workers(settings) as (server, path):
        assert server.process is not None
        token = server.token("ada@example.test", Role.ADMIN)
        project = (await server.gql(token, 'mutation { createProject(input: {name: "P"}) { id } }'))[
            "createProject"
        ]["id"]
        await served_by_both(server, path)

        async def slow_body() -> AsyncIterator[bytes]:
            body = json.dumps({"query": "{ __typename }"}).encode()
            yield body[:5]
            await asyncio.sleep(1.5)  # SIGTERM arrives while the request is being received
            yield body[5:]

        async def in_flight() -> httpx.Response:
            async with httpx.AsyncClient(timeout=20) as http:
                return await http.post(
                    server.url + "/graphql", content=slow_body(), headers={"content-type": "application/json"}
                )

        clients = []
        async with (
            ws(server, token) as a,
            ws(server, token) as b,
            ws(server, token) as c,
            ws(server, token) as d,
            ws(server, token) as e,
            ws(server, token) as f,
        ):
            for client in (a, b, c, d, e, f):
                await client.subscribe("1", TASK_EVENTS, p=project)
                await client.send({"type": "ping"})
                assert await client.receive() == {"type": "pong"}
                clients.append(client)
            requests = [asyncio.create_task(in_flight()) for _ in range(8)]
            await asyncio.sleep(0.5)  # every request is on the wire
            started = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            closes = await asyncio.gather(*(client.closed(within=10) for client in clients))
        assert closes == [(1001, "Server shutting down")] * 6
        await asyncio.sleep(0.3)  # every worker has stopped listening, and so has the supervisor:
        with pytest.raises(httpx.ConnectError):  # a new connection is refused, not queued and reset
            async with httpx.AsyncClient(timeout=5) as http:
                await http.get(server.url + "/healthz")
        responses = await asyncio.gather(*requests, return_exceptions=True)
        assert [getattr(r, "status_code", r) for r in responses] == [200] * 8
        assert all(r.json() == {"data": {"__typename": "Query"}} for r in responses)  # type: ignore[union-attr]
        assert await asyncio.to_thread(server.process.wait, 20) == 0
        assert time.monotonic() - started < settings.shutdown_timeout_seconds + 5
        # Sockets on both workers: each worker logged its accepted WebSockets (as JSON).
        assert len({r["pid"] for r in records(path) if _ws_accepted(r)}) == 2


@several_workers
async def test_every_worker_logs_access_and_operation_lines_in_json(settings: Settings) -> None:
    with two_workers(settings) as (server, path):
        sent = await served_by_both(server, path)
        log = records(path)  # every line is JSON (records() asserts it), warnings included
        access = worker_pids(path, '"POST /graphql')
        operations = {r["pid"] for r in log if r["logger"] == "pulseboard.operations" and r.get("type")}
        assert len(access) == 2 and operations == access
        assert sum(r["logger"] == "pulseboard.operations" for r in log) == sent


@several_workers
async def test_metrics_sum_every_worker_in_one_scrape(settings: Settings) -> None:
    with two_workers(settings) as (server, path):
        sent = await served_by_both(server, path)
        token = server.token("ada@example.test", Role.ADMIN)
        async with http_client(timeout=10) as http:
            for _ in range(4):  # whichever worker answers, the same totals
                exposition = (await http.get(server.url + "/metrics")).text
                assert sum(samples(exposition, "pulseboard_operations_total")) == sent
                count = samples(exposition, "pulseboard_operation_duration_seconds_count")
                assert sum(count) == sent
        # Live gauges add up the workers' sockets.
        async with ws(server, token), ws(server, token), ws(server, token), ws(server, token):
            await asyncio.sleep(0.2)
            async with http_client(timeout=10) as http:
                exposition = (await http.get(server.url + "/metrics")).text
            assert samples(exposition, "pulseboard_ws_connections") == [4.0]


@several_workers
async def test_a_killed_workers_sockets_leave_the_live_gauges(settings: Settings) -> None:
    with two_workers(settings) as (server, path):
        token = server.token("ada@example.test", Role.ADMIN)
        async with ws(server, token), ws(server, token), ws(server, token), ws(server, token):
            await asyncio.sleep(0.2)
            accepted = [r["pid"] for r in records(path) if _ws_accepted(r)]
            assert len(accepted) == 4, accepted
            victim = accepted[0]
            os.kill(victim, signal.SIGKILL)
            deadline = time.monotonic() + 15
            while True:  # the supervisor notices within a few seconds and starts another worker
                async with http_client(timeout=10) as http:
                    exposition = (await http.get(server.url + "/metrics")).text
                left = samples(exposition, "pulseboard_ws_connections")
                if left != [4.0]:
                    break
                assert time.monotonic() < deadline, left
                await asyncio.sleep(0.2)
            assert left == [4.0 - accepted.count(victim)]


def _ws_accepted(record: dict[str, Any]) -> bool:
    return "WebSocket" in record["message"] and "accepted" in record["message"]


# --- the database pool ------------------------------------------------------------------------


def test_pool_settings_reach_the_asyncpg_client() -> None:
    settings = Settings(
        database_url="postgres://app@db:5432/pulseboard",
        database_pool_min=2,
        database_pool_max=7,
        database_acquire_timeout_seconds=1.5,
        database_statement_timeout_seconds=12.5,
    )
    connection = tortoise_config(settings.database_url, settings)["connections"]["default"]
    assert connection["engine"] == "pulseboard.pool"
    credentials = connection["credentials"]
    assert (credentials["minsize"], credentials["maxsize"], credentials["acquire_timeout"]) == (2, 7, 1.5)
    assert credentials["server_settings"]["statement_timeout"] == "12500"
    # Migrations and the command line keep Tortoise's pool and no timeouts.
    plain = tortoise_config(settings.database_url)["connections"]["default"]["credentials"]
    assert "acquire_timeout" not in plain and "server_settings" not in plain
    assert tortoise_config("sqlite://x.db", settings)["connections"]["default"] == "sqlite://x.db"


@pytest.mark.parametrize(
    "values",
    [
        {"database_pool_max": 0},
        {"database_pool_min": 3, "database_pool_max": 2},
        {"database_acquire_timeout_seconds": 0},
        {"database_statement_timeout_seconds": -1},
    ],
)
def test_unusable_pool_settings_are_refused(values: dict[str, Any]) -> None:
    with pytest.raises(SettingsError):
        Settings(**values).check()


@on_postgres
async def test_an_exhausted_pool_answers_a_retryable_error_within_the_acquire_timeout(
    settings: Settings,
) -> None:
    bounded = replace(
        settings, database_pool_min=1, database_pool_max=2, database_acquire_timeout_seconds=0.5
    )
    async with serving(bounded) as api:
        admin = await api.person(Role.ADMIN)
        await api.ok(admin, 'mutation { createProject(input: {name: "P"}) { id } }')
        db = connections.get("default")
        holders = [asyncio.create_task(db.execute_query("SELECT pg_sleep(4)")) for _ in range(2)]
        await asyncio.sleep(0.3)  # both connections are taken
        try:
            started = time.monotonic()
            with pytest.raises(pool.PoolTimeout):
                await db.execute_query("SELECT 1")
            assert time.monotonic() - started < 1.5
            started = time.monotonic()
            response = await api.http.post(
                "/graphql",
                json={"query": 'mutation { createProject(input: {name: "Q"}) { id } }'},
                headers={"authorization": f"Bearer {admin.token}"},
            )
            assert time.monotonic() - started < 2.5
            error = response.json()["errors"][0]
            assert error["extensions"]["code"] == "SERVICE_UNAVAILABLE", response.text
            # Probes answer within their own bound; /healthz does not touch the database.
            started = time.monotonic()
            assert (await api.http.get("/healthz")).status_code == 200
            ready = await api.http.get("/readyz")
            assert ready.status_code == 503 and "database" in ready.text
            assert time.monotonic() - started < 3
        finally:
            await asyncio.gather(*holders, return_exceptions=True)
        # Once the slow queries are done, the pool serves again.
        await api.ok(admin, 'mutation { createProject(input: {name: "R"}) { id } }')
        assert (await api.http.get("/readyz")).status_code == 200


@on_postgres
async def test_statement_timeout_cancels_a_slow_statement(settings: Settings) -> None:
    import asyncpg

    bounded = replace(settings, database_statement_timeout_seconds=0.5)
    async with serving(bounded) as api:
        await api.person(Role.ADMIN)
        started = time.monotonic()
        with pytest.raises(asyncpg.exceptions.QueryCanceledError):
            await connections.get("default").execute_query("SELECT pg_sleep(5)")
        assert time.monotonic() - started < 2
