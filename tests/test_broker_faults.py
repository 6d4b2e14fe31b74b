"""A broker that hangs (SIGSTOP) or answers slowly (DEBUG SLEEP) holds no mutation's answer and
loses no event; /readyz says so; the log says so once, not once per event.

Each test serves the app in this process (on the run's database) against a redis-server of its
own, which it pauses: so these run on both passes, SQLite + memory:// included."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shlex
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis

from pulseboard.models import Role
from pulseboard.settings import Settings
from pulseboard.subscriptions import hub
from pulseboard.subscriptions.encoding import cursor
from tests.live import WS, LiveServer, http_client, listening, serve, ws
from tests.services import RedisServer

PROJECT = 'mutation { createProject(input: {name: "Broker"}) { id } }'
CREATE_TASK = "mutation($p: ID!, $t: String!) { createTask(input: {projectId: $p, title: $t}) { id } }"
TASK_EVENTS = "subscription($p: ID!) { taskEvents(projectId: $p) { cursor } }"
# A mutation that waited for its publish would take the broker timeout (1 s) or the whole pause;
# these answer from the database alone (slack for a loaded machine).
PROMPT = 0.9


class DebuggableRedis(RedisServer):
    """A redis-server of the test's own that accepts DEBUG (Redis 7 refuses it unless enabled):
    its binary is a wrapper that adds the option and execs the real one (same pid)."""

    def __init__(self, directory: Path) -> None:
        super().__init__()
        wrapper = directory / "redis-server"
        wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(self.binary)} "$@" --enable-debug-command local\n')
        wrapper.chmod(0o755)
        self.binary = str(wrapper)


@pytest.fixture
def debuggable_redis(tmp_path: Path) -> Iterator[RedisServer]:
    with DebuggableRedis(tmp_path) as server:
        yield server


@pytest.fixture
def hub_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="pulseboard.hub")
    return caplog


@dataclasses.dataclass
class Scene:
    live: LiveServer
    token: str
    project: str
    client: WS
    seq: int = 0

    @property
    def topic(self) -> str:
        return f"project:{self.project}"

    async def write(self, count: int) -> list[float]:
        """`count` mutations one after another; how long each took to answer."""
        took = []
        for _ in range(count):
            start = time.monotonic()
            self.seq += 1
            await self.live.gql(self.token, CREATE_TASK, p=self.project, t=f"t{self.seq}")
            took.append(time.monotonic() - start)
        return took

    async def received(self, first: int, last: int, within: float = 15) -> None:
        """Events first..last arrive, in order, no gap, no duplicate."""
        got = [
            (await self.client.next("1", within=within))["taskEvents"]["cursor"]
            for _ in range(first, last + 1)
        ]
        assert got == [cursor(self.topic, seq) for seq in range(first, last + 1)]

    async def nothing_more(self) -> None:
        await self.client.send({"type": "ping"})
        assert await self.client.receive() == {"type": "pong"}


@dataclasses.dataclass
class Ready:
    url: str

    async def status(self) -> int:
        async with http_client(timeout=10) as http:
            return (await http.get(self.url + "/readyz")).status_code

    async def becomes(self, status: int, within: float) -> float:
        """Seconds until /readyz answers `status` (polled), failing past `within`."""
        start = time.monotonic()
        while (current := await self.status()) != status:
            assert time.monotonic() - start < within, f"/readyz still {current} after {within} s"
            await asyncio.sleep(0.1)
        return time.monotonic() - start


async def _scene(settings: Settings, broker: RedisServer) -> AsyncIterator[Scene]:
    async with serve(dataclasses.replace(settings, broadcast_url=broker.url)) as live:
        token = live.token("ada@example.test", Role.ADMIN)
        project = (await live.gql(token, PROJECT))["createProject"]["id"]
        async with ws(live, token) as client:
            await client.subscribe("1", TASK_EVENTS, p=project)
            scene = Scene(live, token, project, client)
            await listening(live, scene.topic)
            await scene.write(2)
            await scene.received(1, 2)  # live over the broker
            yield scene


@pytest.fixture
async def paused(settings: Settings, private_redis: RedisServer) -> AsyncIterator[Scene]:
    async for scene in _scene(settings, private_redis):
        yield scene


@pytest.fixture
async def sleepy(settings: Settings, debuggable_redis: RedisServer) -> AsyncIterator[Scene]:
    async for scene in _scene(settings, debuggable_redis):
        yield scene


def _lines(log: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in log.records if r.name == "pulseboard.hub" and text in r.getMessage()]


async def test_a_paused_broker_holds_no_mutation_and_loses_no_event(
    paused: Scene, private_redis: RedisServer, hub_log: pytest.LogCaptureFixture
) -> None:
    private_redis.pause()
    try:
        took = await paused.write(20)
        assert max(took) < PROMPT and sum(took) < 20 * PROMPT / 3, took
        # Delivered from the event log by the hub's sweep, the broker still hung.
        await paused.received(3, 22)
        await asyncio.sleep(1.0)  # publishes keep failing meanwhile
    finally:
        private_redis.resume()
    await paused.write(5)
    await paused.received(23, 27)
    await paused.nothing_more()  # the late publishes Redis carries now are not delivered twice
    assert paused.live.hub.stats["unpublished"] > 0
    assert len(_lines(hub_log, "broker down")) == 1, hub_log.text
    assert len(_lines(hub_log, "broker back after")) == 1, hub_log.text
    assert not [r for r in hub_log.records if r.exc_info], "a traceback per failed publish"
    assert len(_lines(hub_log, "broker still down")) <= 1  # then counted, one line per 10 s


async def test_a_broker_in_debug_sleep_holds_no_mutation_and_loses_no_event(
    sleepy: Scene, debuggable_redis: RedisServer, hub_log: pytest.LogCaptureFixture
) -> None:
    blocker = redis.Redis(port=debuggable_redis.port)
    sleeping = asyncio.create_task(asyncio.to_thread(blocker.execute_command, "DEBUG", "SLEEP", "6"))
    try:
        await asyncio.sleep(0.2)
        start = time.monotonic()
        took = await sleepy.write(20)
        assert max(took) < PROMPT and sum(took) < 20 * PROMPT / 3, took
        await sleepy.received(3, 22)
        assert not sleeping.done(), "the events arrived while Redis slept, by the sweep"
        assert time.monotonic() - start < 6
    finally:
        await sleeping
        blocker.close()
    await sleepy.write(5)
    await sleepy.received(23, 27)
    await sleepy.nothing_more()
    assert len(_lines(hub_log, "broker down")) == 1, hub_log.text
    assert len(_lines(hub_log, "broker back after")) == 1, hub_log.text
    assert not [r for r in hub_log.records if r.exc_info]


async def test_readyz_is_503_while_the_broker_hangs_and_200_once_it_answers(
    paused: Scene, private_redis: RedisServer, hub_log: pytest.LogCaptureFixture
) -> None:
    ready = Ready(paused.live.url)
    assert await ready.status() == 200
    private_redis.pause()
    try:
        assert await ready.becomes(503, within=2.5) < 2.5
        await asyncio.sleep(1.5)
        assert await ready.status() == 503
    finally:
        private_redis.resume()
    assert await ready.becomes(200, within=3) < 3
    assert len(_lines(hub_log, "broker down (PING")) == 1, hub_log.text
    assert len(_lines(hub_log, "broker back after")) == 1, hub_log.text


async def test_the_first_sweep_of_a_new_topic_catches_nothing_up(
    live: LiveServer, hub_log: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_head = hub.head

    async def slow_head(topic: str) -> int:  # as under load: a sweep runs while a topic starts
        await asyncio.sleep(live.hub.sweep_interval * 1.2)
        return await real_head(topic)

    monkeypatch.setattr(hub, "head", slow_head)
    token = live.token("ada@example.test", Role.ADMIN)
    project = (await live.gql(token, PROJECT))["createProject"]["id"]
    for n in range(5):
        await live.gql(token, CREATE_TASK, p=project, t=f"t{n}")
    for _ in range(3):  # a topic new to the hub each time, with events before it
        async with ws(live, token) as client:
            await client.subscribe("1", TASK_EVENTS, p=project)
            await listening(live, f"project:{project}")
            await asyncio.sleep(1.2)  # another sweep
            await live.gql(token, CREATE_TASK, p=project, t="live")
            assert (await client.next("1"))["taskEvents"]["cursor"]
        for _ in range(100):
            if f"project:{project}" not in live.hub.topics:
                break
            await asyncio.sleep(0.02)
    assert not _lines(hub_log, "catching up"), hub_log.text
    assert live.hub.stats["catchups"] == 0


async def test_a_failing_sweep_logs_one_traceback_not_one_a_second(
    live: LiveServer, hub_log: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken() -> None:
        raise ConnectionError("database down")

    live.hub.sweep_interval = 0.05
    monkeypatch.setattr(live.hub, "sweep", broken)
    await asyncio.sleep(1.5)
    monkeypatch.undo()
    await asyncio.sleep(0.5)
    failed = _lines(hub_log, "sweep failed")
    assert len(failed) == 1 and failed[0].exc_info, hub_log.text
    assert len(_lines(hub_log, "sweep still failing")) <= 1  # then counted, one line per 10 s
    assert len(_lines(hub_log, "sweep back after")) == 1, hub_log.text
