"""Real servers for real-socket tests: uvicorn in this process (so a test can inspect the hub),
or as separate worker processes; and a small graphql-transport-ws client."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import uvicorn
from starlette.applications import Starlette
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from pulseboard.app import create_app
from pulseboard.auth import mint_token
from pulseboard.models import Role
from pulseboard.settings import Settings
from pulseboard.subscriptions.hub import Hub

PROTOCOL = "graphql-transport-ws"
TIMEOUT = 10.0
# httpx builds every client an SSL context of its own, loading the CA bundle (some 30 ms of CPU,
# on the event loop that an in-process server shares). The servers here speak plain HTTP: their
# clients share one context instead, unused.
_TLS = ssl.create_default_context()


def http_client(**options: Any) -> httpx.AsyncClient:
    """A new httpx client (so new connections) for the test servers, made in microseconds."""
    return httpx.AsyncClient(verify=_TLS, **options)


@dataclass
class LiveServer:
    url: str
    settings: Settings
    app: Starlette | None = None
    process: subprocess.Popen[bytes] | None = None

    def token(self, email: str, role: Role = Role.MEMBER) -> str:
        return mint_token(
            self.settings.jwt_secret,
            sub=email,
            email=email,
            name=email.split("@")[0],
            role=role,
            ttl=dt.timedelta(hours=1),
        )

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/graphql"

    @property
    def hub(self) -> Hub:
        assert self.app is not None, "only an in-process server has a hub to inspect"
        return self.app.state.hub  # type: ignore[no-any-return]

    async def gql(self, token: str | None, query: str, **variables: Any) -> dict[str, Any]:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        async with http_client(timeout=TIMEOUT) as http:
            response = await http.post(
                self.url + "/graphql", json={"query": query, "variables": variables}, headers=headers
            )
        body = response.json()
        assert not body.get("errors"), body["errors"]
        return body["data"]  # type: ignore[no-any-return]


@asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[LiveServer]:
    """uvicorn serving the app on a free loopback port inside this event loop."""
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        ws_per_message_deflate=False,
        ws_max_size=settings.max_ws_message_bytes,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", settings, app)
    finally:
        server.should_exit = True
        await task


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def worker_process(
    settings: Settings,
    port: int | None = None,
    *,
    args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    log: Path | None = None,
) -> Iterator[LiveServer]:
    """`python -m pulseboard serve [ARGS]` in its own process, as production runs it; `env` adds
    to the PULSEBOARD_* variables made from `settings`; its stderr goes to `log` when given."""
    with _spawned(settings, port, args=args, env=env, log=log) as (server, stderr):
        _wait_until_healthy(server, stderr)
        yield server


@contextmanager
def worker_processes(
    settings: Settings, count: int, *, env: dict[str, str] | None = None
) -> Iterator[list[LiveServer]]:
    """`count` worker_process()es of the same settings, started side by side: most of a start
    (a second or two) is the interpreter importing the app, which they do at once, not in turn."""
    ports: set[int] = set()
    while len(ports) < count:  # none is listening yet, so a free port could come up twice
        ports.add(free_port())
    with ExitStack() as stack:
        spawned = [stack.enter_context(_spawned(settings, port, env=env)) for port in ports]
        for server, stderr in spawned:
            _wait_until_healthy(server, stderr)
        yield [server for server, _ in spawned]


@contextmanager
def _spawned(
    settings: Settings,
    port: int | None = None,
    *,
    args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    log: Path | None = None,
) -> Iterator[tuple[LiveServer, IO[bytes]]]:
    """The process of worker_process(), not yet waited for, and the file of its stderr."""
    port = port or free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("PULSEBOARD_", "PROMETHEUS_"))}
    environ.update(
        PULSEBOARD_DATABASE_URL=settings.database_url,
        PULSEBOARD_BROADCAST_URL=settings.broadcast_url,
        PULSEBOARD_JWT_SECRET=settings.jwt_secret,
        PULSEBOARD_LOG_LEVEL="WARNING",
        PULSEBOARD_METRICS_INTERVAL_SECONDS=str(settings.metrics_interval_seconds),
        PULSEBOARD_MUTATIONS_PER_SECOND=str(settings.mutations_per_second),
        PULSEBOARD_MUTATION_BURST=str(settings.mutation_burst),
        PULSEBOARD_SHUTDOWN_TIMEOUT_SECONDS=str(settings.shutdown_timeout_seconds),
        PULSEBOARD_DELIVERY_RETRY_SECONDS=str(settings.delivery_retry_seconds),
    )
    environ.update(env or {})
    url = f"http://127.0.0.1:{port}"
    with log.open("w+b") if log else tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "pulseboard", "serve", "--port", str(port), *args],
            env=environ,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            yield LiveServer(url, settings, process=process), stderr
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_healthy(server: LiveServer, log: IO[bytes]) -> None:
    assert server.process is not None
    deadline = time.monotonic() + 30
    # One client for every probe: httpx.get() would build a client, SSL context and all, each
    # time (some 30 ms of this process's CPU, which the starting worker could use).
    with httpx.Client(timeout=1, verify=_TLS) as http:
        while True:
            try:
                if http.get(server.url + "/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if server.process.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise RuntimeError(f"worker did not start: {log.read().decode(errors='replace')}")
            time.sleep(0.05)


async def listening(server: LiveServer, topic: str, within: float = TIMEOUT) -> None:
    """Until an in-process server's hub listens on `topic` (a client cannot know when its
    subscription is live: the protocol does not acknowledge subscribe messages)."""
    for _ in range(int(within / 0.02)):
        if server.hub.topics.get(topic, 0) >= 1:
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError(f"no listener on {topic} within {within} s: {server.hub.topics}")
    await asyncio.sleep(0.2)  # the stream reads the topic's head right after it starts listening


class WS:
    """A graphql-transport-ws client that asserts the protocol as it goes."""

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn

    async def send(self, message: Any) -> None:
        await self.conn.send(message if isinstance(message, (str, bytes)) else json.dumps(message))

    async def receive(self, within: float = TIMEOUT) -> dict[str, Any]:
        return json.loads(await asyncio.wait_for(self.conn.recv(), within))  # type: ignore[no-any-return]

    async def init(self, token: str | None = None) -> None:
        payload = {"authorization": f"Bearer {token}"} if token else {}
        await self.send({"type": "connection_init", "payload": payload})
        assert await self.receive() == {"type": "connection_ack"}

    async def subscribe(self, id: str, query: str, **variables: Any) -> None:
        await self.send({"id": id, "type": "subscribe", "payload": {"query": query, "variables": variables}})

    async def next(self, id: str, within: float = TIMEOUT) -> dict[str, Any]:
        """The data of the next `next` message, which must be for `id`."""
        message = await self.receive(within)
        assert message.get("id") == id and message["type"] == "next", message
        assert "errors" not in message["payload"], message
        return message["payload"]["data"]  # type: ignore[no-any-return]

    async def complete(self, id: str) -> None:
        await self.send({"id": id, "type": "complete"})

    async def closed(self, within: float = TIMEOUT) -> tuple[int | None, str]:
        """Waits for the server to close the socket; its close code and reason."""
        try:
            while True:
                await asyncio.wait_for(self.conn.recv(), within)
        except ConnectionClosed as closed:
            assert closed.rcvd is not None, "closed without a close frame"
            return closed.rcvd.code, closed.rcvd.reason


@asynccontextmanager
async def ws(server: LiveServer, token: str | None = None, **options: Any) -> AsyncIterator[WS]:
    """A socket speaking graphql-transport-ws; initialised (and acknowledged) when a token is given."""
    async with connect(server.ws_url, subprotocols=[PROTOCOL], open_timeout=TIMEOUT, **options) as conn:  # type: ignore[list-item]
        client = WS(conn)
        if token is not None:
            await client.init(token)
        yield client
