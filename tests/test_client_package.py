"""End to end through @pulseboard/client (clients/js), under Apollo Client 4 and urql 6 in Node:
a taskEvents subscriber that never loses an event. The server is restarted under it (SIGKILL
mid-stream while a writer keeps committing, and SIGTERM: both clients at once, on the same
real `python -m pulseboard serve` processes), its token expires while it is connected, and a bad
token must end in "failed", not in a retry loop.

tests/clients/resume.mjs drives the clients (its lines: TOKEN, STATE, EVENT, ERROR, DONE); it
asks this test for every token, so a test can commit events while the client waits for a fresh
one. Each stream starts from the cursor before the task's CREATED event: the task's versions
1..N are the whole stream, so a lost event is a gap and an event delivered twice a repeat (which
is also what a reconnect that forgot its cursor, and replayed from the start, would show)."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import itertools
import json
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from pulseboard.auth import mint_token
from pulseboard.models import Role
from pulseboard.settings import Settings
from pulseboard.subscriptions import topics
from pulseboard.subscriptions.encoding import cursor
from tests.live import LiveServer, free_port, http_client, worker_process
from tests.node import TIMEOUT, NodeScript, node_for, run_script
from tests.test_clients import CLIENTS

PACKAGES = ("@apollo/client", "@urql/core", "@pulseboard/client", "graphql", "graphql-ws", "ws")
SCRIPT_DEADLINE_MS = 180_000
USER = "writer@example.test"

CREATE_PROJECT = "mutation($name: String!) { createProject(input: {name: $name}) { id } }"
CREATE_TASK = "mutation($p: ID!, $t: String!) { createTask(input: {projectId: $p, title: $t}) { id } }"
UPDATE_TASK = "mutation($id: ID!, $t: String!) { updateTask(id: $id, input: {title: $t}) { version } }"
VERSION = "query($id: ID!) { task(id: $id) { version } }"

CLIENT_NAMES = ("apollo", "urql")

Tokens = Callable[[bool], Awaitable[str | None]]


@dataclass
class Board:
    """A project with one task (version 1, its CREATED event seq 1 of the project's topic)."""

    project: str
    task: str
    token: str  # the user's, for an hour

    @property
    def start(self) -> str:
        """The cursor before any event of the project."""
        return cursor(topics.project(int(self.project)), 0)


async def _board(server: LiveServer) -> Board:
    token = server.token(USER, Role.ADMIN)
    project = (await server.gql(token, CREATE_PROJECT, name="Resumed"))["createProject"]["id"]
    task = (await server.gql(token, CREATE_TASK, p=project, t="v1"))["createTask"]["id"]
    return Board(project, task, token)


async def _update(server: LiveServer, board: Board, times: int = 1) -> None:
    for n in range(times):
        await server.gql(board.token, UPDATE_TASK, id=board.task, t=f"update {n}")


async def _version(server: LiveServer, board: Board) -> int:
    return int((await server.gql(board.token, VERSION, id=board.task))["task"]["version"])


@asynccontextmanager
async def _process(settings: Settings, port: int | None = None) -> AsyncIterator[LiveServer]:
    """worker_process() started and stopped in a thread, so that the client's lines are read
    (and its token requests answered) meanwhile."""
    with ExitStack() as stack:
        server = await asyncio.to_thread(stack.enter_context, worker_process(settings, port))
        try:
            yield server
        finally:
            await asyncio.to_thread(stack.pop_all().close)


async def _stopped(server: LiveServer, how: signal.Signals) -> int:
    assert server.process is not None
    server.process.send_signal(how)
    return await asyncio.to_thread(server.process.wait, 30)


class Conversation:
    """A running resume.mjs: every line it printed, with its token requests answered by `tokens`."""

    def __init__(self, script: NodeScript, tokens: Tokens) -> None:
        self.script = script
        self.tokens = tokens
        self.lines: list[tuple[str, Any]] = []
        self._changed = asyncio.Condition()
        self._answers: set[asyncio.Task[None]] = set()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            while True:
                kind, rest = await self.script.line()
                value: Any = json.loads(rest) if rest else None
                if kind == "TOKEN":
                    answer = asyncio.create_task(self._answer(value["refresh"]))
                    self._answers.add(answer)
                    answer.add_done_callback(self._answers.discard)
                async with self._changed:
                    self.lines.append((kind, value))
                    self._changed.notify_all()
                if kind == "DONE":
                    return
        finally:
            async with self._changed:
                self._changed.notify_all()

    async def _answer(self, refresh: bool) -> None:
        token = await self.tokens(refresh)
        await self.script.send(f"TOKEN {token or ''}".rstrip())

    def of(self, kind: str) -> list[Any]:
        return [value for got, value in self.lines if got == kind]

    def versions(self) -> list[int]:
        return [event["version"] for event in self.of("EVENT")]

    async def until(self, predicate: Callable[[Conversation], bool], what: str) -> None:
        def ready() -> bool:
            return predicate(self) or self._reader.done()

        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(ready), TIMEOUT)
            except TimeoutError:
                raise AssertionError(
                    f"not within {TIMEOUT} s: {what}; the client said {self.lines}"
                ) from None
        if not predicate(self):
            self._reader.result()  # the reason it stopped reading, if any
            raise AssertionError(f"the client ended before {what}: {self.lines}")

    def close(self) -> None:
        """Stops reading (before the script is ended, which it would take for a failure)."""
        for task in (self._reader, *self._answers):
            task.cancel()

    async def stop(self) -> dict[str, Any]:
        """STOP: the client's last state and how often it asked for a token."""
        await self.script.send("STOP")
        await asyncio.wait_for(asyncio.shield(self._reader), TIMEOUT)
        self._reader.result()
        assert await self.script.exit_code() == 0, await self.script.stderr()
        done: dict[str, Any] = self.of("DONE")[0]
        return done


@asynccontextmanager
async def _client(
    client: str, server: LiveServer, board: Board, tokens: Tokens
) -> AsyncIterator[Conversation]:
    node = node_for(CLIENTS, PACKAGES)
    if not (CLIENTS / "node_modules/@pulseboard/client/dist/index.js").is_file():
        pytest.fail("clients/js is not built: run `make test` (it builds @pulseboard/client)")
    args = ["--client", client, "--ws-url", server.ws_url, "--project", board.project, "--after", board.start]
    # The script's own deadline spans a whole test (two server starts, reconnect backoff); each
    # step still has TIMEOUT to show up.
    async with run_script(node, CLIENTS / "resume.mjs", *args, timeout_ms=SCRIPT_DEADLINE_MS) as script:
        talk = Conversation(script, tokens)
        try:
            yield talk
        finally:
            talk.close()


def _fixed(token: str | None) -> Tokens:
    async def tokens(refresh: bool) -> str | None:
        return token

    return tokens


def _streamed(talk: Conversation, upto: int) -> bool:
    return bool(talk.versions()) and talk.versions()[-1] >= upto


def _reconnecting_after(talk: Conversation, code: int) -> bool:
    return any(
        state["status"] == "reconnecting" and state.get("lastClose", {}).get("code") == code
        for state in talk.of("STATE")
    )


class Writer:
    """Commits updateTask mutations one after another to `target`, which the test changes as
    servers go and come, until stopped. Requests that fail (a server down, or killed while it
    answered) are tried again; which committed is read from the task's version afterwards."""

    def __init__(self, board: Board, target: LiveServer) -> None:
        self.board = board
        self.target = target
        self.acknowledged: list[int] = []
        self._stopping = False
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        headers = {"authorization": f"Bearer {self.board.token}"}
        async with http_client(timeout=5) as http:
            for n in itertools.count():  # a new title each time: the same one would change nothing
                if self._stopping:
                    return
                body = {"query": UPDATE_TASK, "variables": {"id": self.board.task, "t": f"written {n}"}}
                try:
                    response = await http.post(self.target.url + "/graphql", json=body, headers=headers)
                    answer = response.json()
                except (httpx.TransportError, ValueError):
                    await asyncio.sleep(0.05)
                    continue
                if answer.get("errors"):  # a server starting or stopping: nothing was done
                    await asyncio.sleep(0.05)
                    continue
                self.acknowledged.append(answer["data"]["updateTask"]["version"])
                await asyncio.sleep(0.02)

    async def committed(self, count: int) -> None:
        """Until `count` more mutations are acknowledged."""
        wanted = len(self.acknowledged) + count
        for _ in range(int(TIMEOUT / 0.02)):
            if len(self.acknowledged) >= wanted:
                return
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.02)
        raise AssertionError(
            f"the writer committed {len(self.acknowledged)}, not {wanted}, within {TIMEOUT} s"
        )

    async def stop(self) -> None:
        self._stopping = True
        await self._task


def _assert_whole_stream(talk: Conversation, final: int) -> None:
    """Versions 1..final, each once, in order: no event lost, none repeated."""
    events = talk.of("EVENT")
    assert [e["version"] for e in events] == list(range(1, final + 1)), events
    assert [e["type"] for e in events] == ["CREATED"] + ["UPDATED"] * (final - 1)
    assert len({e["cursor"] for e in events}) == final
    assert not talk.of("ERROR"), talk.of("ERROR")


class Resuming:
    """Both clients (Apollo and urql) on one server, the restart tests' subscribers: starting a
    server is most of such a test's time, and two subscribers are no weaker than one. A client
    reconnecting once `hold` is set waits for its token until the writer has committed three
    more events: events it can get only by resuming."""

    def __init__(self, stack: AsyncExitStack, server: LiveServer, board: Board) -> None:
        self.stack, self.server, self.board = stack, server, board
        self.talks: dict[str, Conversation] = {}
        self.writer: Writer | None = None
        self.held: set[str] = set()

    async def start(self) -> None:
        for name in CLIENT_NAMES:
            tokens = functools.partial(self._token, name)
            self.talks[name] = await self.stack.enter_async_context(
                _client(name, self.server, self.board, tokens)
            )

    async def _token(self, name: str, refresh: bool) -> str | None:
        if name in self.held:
            self.held.discard(name)
            assert self.writer is not None
            await self.writer.committed(3)
        return self.board.token

    def hold(self) -> None:
        self.held = set(CLIENT_NAMES)

    async def until(self, predicate: Callable[[Conversation], bool], what: str) -> None:
        await asyncio.gather(*(talk.until(predicate, f"{name}: {what}") for name, talk in self.talks.items()))

    async def stop(self) -> dict[str, dict[str, Any]]:
        return {name: await talk.stop() for name, talk in self.talks.items()}


async def test_sigkill_mid_stream_and_restart_on_the_same_port_loses_and_repeats_nothing(
    settings: Settings,
) -> None:
    port = free_port()
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(_process(settings, port))
        clients = Resuming(stack, first, await _board(first))
        await clients.start()
        await clients.until(lambda t: _streamed(t, 1), "the CREATED event")
        writer = clients.writer = Writer(clients.board, first)
        await clients.until(lambda t: _streamed(t, 4), "events from the writer")
        assert await _stopped(first, signal.SIGKILL) == -signal.SIGKILL  # mid-stream: the writer is writing
        clients.hold()
        second = await stack.enter_async_context(_process(settings, port))
        writer.target = second  # until now it wrote to the port with no server, and failed
        await clients.until(lambda t: len(t.of("TOKEN")) >= 2, "a connection to the new server")
        await writer.committed(3)
        await writer.stop()
        final = await _version(second, clients.board)
        await clients.until(lambda t: _streamed(t, final), f"every version up to {final}")
        done = await clients.stop()

    assert not clients.held  # each waited for events committed while it was connecting
    for name, talk in clients.talks.items():
        _assert_whole_stream(talk, final)
        assert set(writer.acknowledged) <= set(talk.versions()), name
        assert _reconnecting_after(talk, 1006), name  # the lost connection, and the refused ones after it
        assert done[name]["state"] == {"status": "connected"}, name
        assert {token["refresh"] for token in talk.of("TOKEN")} == {False}, name


async def test_sigterm_restart_is_retried_through_refused_connections_and_resumed(settings: Settings) -> None:
    port = free_port()
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(_process(settings, port))
        clients = Resuming(stack, first, await _board(first))
        await clients.start()
        await clients.until(lambda t: _streamed(t, 1), "the CREATED event")
        await _update(first, clients.board, 2)
        await clients.until(lambda t: _streamed(t, 3), "versions 2 and 3")
        assert await _stopped(first, signal.SIGTERM) == 0
        await clients.until(lambda t: _reconnecting_after(t, 1001), "reconnecting after the 1001 close")
        # The server is gone: only a refused connection ends with 1006 now.
        await clients.until(lambda t: _reconnecting_after(t, 1006), "a refused connection")
        # The writer exists before the new server does: a client may reach that server, and wait
        # for the writer's events, before _process() returns.
        writer = clients.writer = Writer(clients.board, first)
        clients.hold()
        second = await stack.enter_async_context(_process(settings, port))
        writer.target = second  # the same port: until now it failed to connect, and tried again
        await clients.until(lambda t: len(t.of("TOKEN")) >= 2, "a connection to the new server")
        await writer.committed(3)
        await writer.stop()
        final = await _version(second, clients.board)
        await clients.until(lambda t: _streamed(t, final), f"every version up to {final}")
        done = await clients.stop()

    assert not clients.held
    for name, talk in clients.talks.items():
        _assert_whole_stream(talk, final)
        states = talk.of("STATE")
        gone = states.index(next(s for s in states if s.get("lastClose", {}).get("code") == 1001))
        refused = next(s for s in states[gone:] if s.get("lastClose", {}).get("code") == 1006)
        assert refused["attempt"] >= 2, name  # counted since the last successful connection
        assert done[name]["state"] == {"status": "connected"}, name


@pytest.mark.parametrize("client", CLIENT_NAMES)
async def test_token_expiring_while_connected_is_refreshed_and_the_stream_resumed(
    live: LiveServer, client: str
) -> None:
    board = await _board(live)
    refreshed = asyncio.Event()

    async def tokens(refresh: bool) -> str | None:
        if not refresh:  # brief: it expires while the client is connected
            return mint_token(
                live.settings.jwt_secret,
                sub=USER,
                email=USER,
                name="writer",
                role=Role.ADMIN,
                ttl=dt.timedelta(seconds=4),
            )
        await _update(live, board, 3)  # while the client waits for its new token: missed, for now
        refreshed.set()
        return board.token

    async with _client(client, live, board, tokens) as talk:
        await talk.until(lambda t: _streamed(t, 1), "the CREATED event")
        await _update(live, board, 2)
        await talk.until(lambda t: _streamed(t, 3), "versions 2 and 3")
        await talk.until(lambda t: len(t.of("TOKEN")) >= 2, "a token refresh")
        await asyncio.wait_for(refreshed.wait(), TIMEOUT)
        await _update(live, board)
        await talk.until(lambda t: _streamed(t, 7), "versions 4 to 7")
        done = await talk.stop()

    _assert_whole_stream(talk, 7)
    assert [token["refresh"] for token in talk.of("TOKEN")] == [False, True]
    expired = {"status": "reconnecting", "attempt": 1, "lastClose": {"code": 4403, "reason": "Token expired"}}
    assert expired in talk.of("STATE")
    refresh_at = [i for i, (kind, _) in enumerate(talk.lines) if kind == "TOKEN"][1]
    assert [value["version"] for kind, value in talk.lines[:refresh_at] if kind == "EVENT"] == [1, 2, 3]
    assert done["state"] == {"status": "connected"}


@pytest.mark.parametrize("client", CLIENT_NAMES)
async def test_bad_token_fails_with_invalid_token_and_is_not_retried(live: LiveServer, client: str) -> None:
    board = await _board(live)
    async with _client(client, live, board, _fixed("not-a-token")) as talk:
        await talk.until(lambda t: bool(t.of("ERROR")), "the subscription's error")
        done = await talk.stop()

    failed = [state for state in talk.of("STATE") if state["status"] == "failed"]
    assert len(failed) == 1, talk.of("STATE")
    assert (failed[0]["code"], failed[0]["reason"]) == (4403, "Invalid token")
    assert "4403" in failed[0]["error"] and "Invalid token" in failed[0]["error"]
    assert not any(state["status"] == "reconnecting" for state in talk.of("STATE"))
    assert done == {"state": failed[0], "tokenCalls": 1}
    assert not talk.of("EVENT")
