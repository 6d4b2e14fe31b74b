"""Graceful shutdown of a real worker process: SIGTERM closes sockets with 1001 and exits 0."""

from __future__ import annotations

import asyncio
import signal
import time

from pulseboard.models import Role
from pulseboard.settings import Settings
from tests.live import worker_process, ws


async def test_sigterm_closes_sockets_1001_and_exits_0_in_bounded_time(settings: Settings) -> None:
    with worker_process(settings) as server:
        assert server.process is not None
        token = server.token("ada@example.test", Role.ADMIN)
        project = (await server.gql(token, 'mutation { createProject(input: {name: "P"}) { id } }'))[
            "createProject"
        ]["id"]
        async with ws(server, token) as client:
            await client.subscribe(
                "1", "subscription($p: ID!) { taskEvents(projectId: $p) { type } }", p=project
            )
            await client.send({"type": "ping"})
            assert await client.receive() == {"type": "pong"}
            started = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            code, _ = await client.closed(within=10)
            assert code == 1001
        exit_code = await asyncio.to_thread(server.process.wait, 15)
        assert exit_code == 0
        assert time.monotonic() - started < settings.shutdown_timeout_seconds + 5
