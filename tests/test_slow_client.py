"""A subscriber that stops reading costs bounded memory, slows no one, and still loses nothing."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tortoise import timezone

from pulseboard.models import Event, Role, TopicCounter
from pulseboard.subscriptions.encoding import cursor, from_row
from tests.live import LiveServer, ws

EVENTS = 10_000
# Each delivery carries a 2 KB description, so 10 000 of them overflow any socket buffers.
TASK_EVENTS = "subscription($p: ID!) { taskEvents(projectId: $p) { cursor task { description } } }"
DESCRIPTION = "d" * 2048


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def test_a_client_that_never_reads_is_bounded_and_harmless(live: LiveServer) -> None:
    token = live.token("ada@example.test", Role.ADMIN)
    project = (await live.gql(token, 'mutation { createProject(input: {name: "P"}) { id } }'))[
        "createProject"
    ]["id"]
    topic = f"project:{project}"
    async with ws(live, token, max_queue=1) as slow, ws(live, token) as fast:
        for client in (slow, fast):
            await client.subscribe("1", TASK_EVENTS, p=project)
            await client.send({"type": "ping"})
            assert await client.receive() == {"type": "pong"}
        await asyncio.sleep(0.2)
        # 10 000 committed events (rows and counter written in bulk: it is the fan-out under test)
        now = timezone.now()
        rows = [
            Event(topic=topic, seq=seq, type="CREATED", payload=_payload(int(project), seq), created_at=now)
            for seq in range(1, EVENTS + 1)
        ]
        await Event.bulk_create(rows, batch_size=1000)
        await TopicCounter.create(topic=topic, seq=EVENTS)
        before = rss_mib()
        started = time.monotonic()
        for start in range(0, EVENTS, 500):
            await live.hub.publish([from_row(row) for row in rows[start : start + 500]])
            await asyncio.sleep(0)
        received = [(await fast.next("1"))["taskEvents"]["cursor"] for _ in range(EVENTS)]
        fast_seconds = time.monotonic() - started
        grown = rss_mib() - before
        assert received == [cursor(topic, seq) for seq in range(1, EVENTS + 1)]
        assert grown < 64, f"server memory grew {grown:.0f} MiB behind a client that does not read"
        assert fast_seconds < 60
        engine = live.app.state.engine  # type: ignore[union-attr]
        assert engine.cohorts.stats["overflows"] > 0, "the slow client's outbox never overflowed"
        # The slow client finally reads: every event, once, in order (what overflowed came from
        # the event log).
        late = [(await slow.next("1", within=30))["taskEvents"]["cursor"] for _ in range(EVENTS)]
        assert late == [cursor(topic, seq) for seq in range(1, EVENTS + 1)]
        await slow.send({"type": "ping"})
        assert await slow.receive() == {"type": "pong"}


def _payload(project: int, seq: int) -> dict[str, object]:
    task = {
        "id": seq,
        "project_id": project,
        "title": f"t{seq}",
        "description": DESCRIPTION,
        "status": "TODO",
        "position": seq - 1,
        "priority": "MEDIUM",
        "progress": 0,
        "assignee_id": None,
        "due_at": None,
        "created_by_id": 1,
        "created_at": "2026-01-01T00:00:00+00:00",
        "updated_at": "2026-01-01T00:00:00+00:00",
        "completed_at": None,
        "version": 1,
    }
    return {"task": task, "changes": []}
