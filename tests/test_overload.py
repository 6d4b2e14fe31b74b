"""Overload shedding: a worker whose event loop lags answers new GraphQL requests 503 (retryable,
nothing done) and recovers by itself; health checks are never shed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

import pytest

from pulseboard import telemetry
from pulseboard.models import Role
from pulseboard.settings import Settings
from tests.helpers import Api, serving


@asynccontextmanager
async def saturated(block: float = 0.4) -> AsyncIterator[None]:
    """The event loop kept busy the way a saturated worker is: callbacks that hold it for
    `block` seconds at a time, until the block ends."""

    async def hog() -> None:
        while True:
            time.sleep(block)  # noqa: ASYNC251 - the point: the loop cannot run anything else
            await asyncio.sleep(0.01)

    task = asyncio.create_task(hog())
    await asyncio.sleep(4 * block)  # the lag timer has woken late several times running
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def shed() -> float:
    return telemetry.REGISTRY.get_sample_value("pulseboard_requests_shed_total") or 0.0


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    """The app with shedding on, as served (the shared fixture turns it off)."""
    async with serving(replace(settings, overload_lag_ms=250)) as shedding:
        yield shedding


async def test_a_lagging_worker_sheds_new_requests_and_recovers(api: Api) -> None:
    admin = await api.person(Role.ADMIN)
    create = 'mutation { createProject(input: {name: "Shed"}) { id } }'
    headers = {"authorization": f"Bearer {admin.token}", "accept": "application/graphql-response+json"}
    shed_before = shed()

    async with saturated():
        refused = await api.http.post("/graphql", json={"query": create}, headers=headers)
        health = await api.http.get("/healthz")

    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert refused.headers["content-type"].startswith("application/graphql-response+json")
    error = refused.json()["errors"][0]
    assert error["extensions"] == {"code": "SERVICE_UNAVAILABLE", "retryAfterSeconds": 1}
    assert health.status_code == 200
    assert shed() > shed_before

    # The refused mutation did nothing; once the loop is free again requests run as before.
    await asyncio.sleep(0.2)
    data = await api.ok(admin, "{ projects(first: 100) { edges { node { name } } } }")
    assert [e["node"]["name"] for e in data["projects"]["edges"]].count("Shed") == 0
    await api.ok(admin, create)


async def test_one_long_callback_is_not_overload(api: Api) -> None:
    """A single stall (a full collection, a burst of handshakes) is not a saturated worker."""
    await asyncio.sleep(0.3)  # a few timely ticks
    asyncio.get_running_loop().call_soon(time.sleep, 0.4)
    await asyncio.sleep(0.45)
    response = await api.http.post("/graphql", json={"query": "{ __typename }"})
    assert response.status_code == 200, response.text


async def test_shedding_can_be_turned_off(settings: Settings) -> None:
    async with serving(replace(settings, overload_lag_ms=0)) as api, saturated():
        response = await api.http.post("/graphql", json={"query": "{ __typename }"})
    assert response.status_code == 200, response.text
