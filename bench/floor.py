"""The floor of bench/delivery.py: a bare Starlette WebSocket endpoint under uvicorn (the server
pulseboard runs on, permessage-deflate off) that speaks just enough graphql-transport-ws —
`connection_ack` to any `connection_init`, `pong` to `ping`, a `subscribe` is accepted as is —
and sends pre-built `next` frames from a timer. No GraphQL, no database, no broker: what is left
is the cost of uvicorn, Starlette and the websocket writes.

    .venv/bin/python bench/floor.py --port 9000 --projects 1000000001,1000000002

A subscribe's `variables.p` names the project. Each event is one JSON text, built once, of the
shape (and so the size) pulseboard and bench/reference/server.mjs send for the bench's
selection, and written to each subscriber of its project in turn.

Control on stdin, the same commands as bench/reference/server.mjs (one JSON command a line,
each answered on stdout with one JSON line carrying its `id`): `warm {round}`, `run {rate,
count}`, `stop {}`, `versions {}`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import json
import sys
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

PROTOCOL = "graphql-transport-ws"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class Floor:
    def __init__(self, projects: list[str]) -> None:
        self.projects = projects
        # Per project: (socket, subscription id) of each subscriber, in subscription order.
        self.subscribers: dict[str, dict[tuple[WebSocket, str], None]] = {p: {} for p in projects}
        self.versions = dict.fromkeys(projects, 0)
        self.titles = dict.fromkeys(projects, "seed")
        self.stopped = False
        self.server: uvicorn.Server | None = None

    # --- the socket ---------------------------------------------------------------------------

    async def endpoint(self, websocket: WebSocket) -> None:
        await websocket.accept(subprotocol=PROTOCOL)
        mine: list[tuple[str, tuple[WebSocket, str]]] = []
        try:
            while True:
                message = json.loads(await websocket.receive_text())
                kind = message.get("type")
                if kind == "connection_init":
                    await websocket.send_text('{"type":"connection_ack"}')
                elif kind == "ping":
                    await websocket.send_text('{"type":"pong"}')
                elif kind == "subscribe":
                    project = str((message["payload"].get("variables") or {}).get("p"))
                    if project in self.subscribers:
                        key = (websocket, str(message["id"]))
                        self.subscribers[project][key] = None
                        mine.append((project, key))
                elif kind == "complete":
                    for project, key in mine:
                        if key[1] == message.get("id"):
                            self.subscribers[project].pop(key, None)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            for project, key in mine:
                self.subscribers[project].pop(key, None)

    # --- events -------------------------------------------------------------------------------

    def body(self, index: int, title: str) -> tuple[str, str]:
        """(project, the JSON of the event): the same fields and values as server.mjs."""
        project = self.projects[index % len(self.projects)]
        version = self.versions[project] + 1
        self.versions[project] = version
        previous, self.titles[project] = self.titles[project], title
        writer = f"bench-writer-{project}"
        event = {
            "cursor": base64.urlsafe_b64encode(f"project:{project}#{version}".encode()).decode(),
            "type": "UPDATED",
            "occurredAt": dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"),
            "task": {
                "id": str(self.projects.index(project) + 1),
                "title": title,
                "status": "TODO",
                "position": 0,
                "priority": "MEDIUM",
                "progress": 0,
                "version": version,
                "assignee": None,
            },
            "actor": {"id": str(self.projects.index(project) + 2), "name": writer},
            "changes": [{"field": "title", "from": previous, "to": title}],
        }
        return project, json.dumps({"data": {"taskEvents": event}}, separators=(",", ":"))

    async def publish(self, index: int, title: str | None = None) -> None:
        project, body = self.body(index, title or f"t{time.monotonic_ns()}")
        frames: dict[str, str] = {}
        for websocket, sub_id in list(self.subscribers[project]):
            frame = frames.get(sub_id)
            if frame is None:
                frame = frames[sub_id] = f'{{"id":{json.dumps(sub_id)},"type":"next","payload":{body}}}'
            try:
                await websocket.send_text(frame)
            except Exception:  # closed under us
                self.subscribers[project].pop((websocket, sub_id), None)

    async def run(self, rate: float, count: int) -> dict[str, Any]:
        """`count` events at `rate` per second, due at start + i / rate (late ones go at once)."""
        self.stopped = False
        started = time.monotonic()
        max_late = 0.0
        sent = 0
        for i in range(count):
            if self.stopped:
                break
            delay = started + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                max_late = max(max_late, -delay)
            await self.publish(i)
            sent += 1
        return {"sent": sent, "seconds": time.monotonic() - started, "maxLateMs": max_late * 1000}

    # --- control --------------------------------------------------------------------------------

    async def command(self, message: dict[str, Any]) -> dict[str, Any]:
        cmd = message.get("cmd")
        if cmd == "warm":
            for i in range(len(self.projects)):
                await self.publish(i, f"w{message['round']}")
            return {"versions": self.versions}
        if cmd == "run":
            result = await self.run(float(message["rate"]), int(message["count"]))
            return {**result, "versions": self.versions}
        if cmd == "stop":
            self.stopped = True
            return {}
        if cmd == "versions":
            return {"versions": self.versions}
        return {"error": f"unknown command {cmd}"}

    async def control(self) -> None:
        """Commands from stdin (read by a thread); each answered when done, `run` concurrently
        with the others so that `stop` reaches it."""
        loop = asyncio.get_running_loop()
        lines: asyncio.Queue[str | None] = asyncio.Queue()

        def reader() -> None:
            for line in sys.stdin:
                loop.call_soon_threadsafe(lines.put_nowait, line)
            loop.call_soon_threadsafe(lines.put_nowait, None)

        threading.Thread(target=reader, daemon=True).start()
        running: set[asyncio.Task[None]] = set()

        async def serve(message: dict[str, Any]) -> None:
            answer = await self.command(message)
            print(json.dumps({"id": message.get("id"), **answer}), flush=True)

        while True:
            line = await lines.get()
            if line is None:  # the bench went away (or is done): stop serving
                if self.server is not None:
                    self.server.should_exit = True
                return
            if line.strip():
                task = asyncio.create_task(serve(json.loads(line)))
                running.add(task)
                task.add_done_callback(running.discard)


def build(floor: Floor) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        control = asyncio.create_task(floor.control())
        print(json.dumps({"ready": True}), flush=True)
        yield
        control.cancel()

    return Starlette(routes=[WebSocketRoute("/graphql", floor.endpoint)], lifespan=lifespan)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--projects", required=True, help="comma-separated project ids")
    args = parser.parse_args()
    if args.host not in LOOPBACK:
        parser.error("loopback addresses only")
    floor = Floor(args.projects.split(","))
    config = uvicorn.Config(
        build(floor),
        host=args.host,
        port=args.port,
        ws_per_message_deflate=False,
        log_level="warning",
        access_log=False,
        lifespan="on",
    )
    floor.server = uvicorn.Server(config)
    floor.server.run()


if __name__ == "__main__":
    main()
