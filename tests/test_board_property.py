"""The board-consistency property: a client that takes one snapshot of a board and then applies
every task event (the event's task, and its `displaced`) keeps exactly the server's board, while
several people change it at once. The same event stream also goes through Apollo Client 4's
normalized cache (InMemoryCache), in Node (tests/clients/board.mjs), whose board must be the
server's too. Random operations from a seed, which the test prints; set PULSEBOARD_TEST_BOARD_SEED
to replay one."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from pulseboard.models import Role
from pulseboard.settings import Settings
from tests.conftest import BROADCAST_URL, ON_POSTGRES
from tests.live import WS, LiveServer, http_client, worker_process, ws
from tests.node import TIMEOUT, NodeScript, node_for, run_script
from tests.test_board_events import ADD_MEMBER, CREATE, EVENTS, PROJECT, Board, apply, columns, server_board

pytestmark = pytest.mark.skipif(
    not (ON_POSTGRES and BROADCAST_URL.startswith("redis")),
    reason="concurrent writers on a worker process need PostgreSQL and Redis (the suite's second pass)",
)

COLUMNS = ("TODO", "IN_PROGRESS", "IN_REVIEW", "DONE")
ROUNDS, OPS_PER_ROUND = 10, 50
INITIAL_TASKS = 12
SETTLE_SECONDS = 30.0  # how long the events of a round may take to arrive, at most
RESULT = "id version"
OPERATIONS = {
    "create": f"mutation($p: ID!, $t: String!, $s: TaskStatus, $a: ID) {{ createTask(input: "
    f"{{projectId: $p, title: $t, status: $s, assigneeId: $a}}) {{ {RESULT} }} }}",
    "move": f"mutation($id: ID!, $s: TaskStatus!, $at: Int!, $v: Int) {{ moveTask(id: $id, status: $s, "
    f"position: $at, expectedVersion: $v) {{ {RESULT} }} }}",
    "complete": f"mutation($id: ID!) {{ completeTask(id: $id) {{ {RESULT} }} }}",
    "delete": f"mutation($id: ID!) {{ deleteTask(id: $id) {{ {RESULT} }} }}",
    "assign": f"mutation($id: ID!, $a: ID, $v: Int) {{ assignTask(id: $id, assigneeId: $a, "
    f"expectedVersion: $v) {{ {RESULT} }} }}",
}
GONE = 0  # in place of a version: the task's deletion (versions start at 1)
PROBE = "mutation($id: ID!, $t: String!) { updateTask(id: $id, input: {title: $t}) { id version } }"
# Another writer got there first (the task is gone, or changed since its version was read).
EXPECTED_REFUSALS = {"NOT_FOUND", "CONFLICT"}
CLIENTS = Path(__file__).parent / "clients"
CACHE_DEADLINE_MS = 30 * 60 * 1000  # board.mjs's own deadline: longer than the whole test


@pytest.fixture
def server(settings: Settings) -> Iterator[LiveServer]:
    with worker_process(settings) as worker:
        yield worker


@dataclass
class Follower:
    """The client under test: a board from one snapshot, then kept from task events alone. It
    checks the board after every event, and records each (task, version) it has seen, and
    (task, GONE) for each deletion (a deleted task keeps the version it had)."""

    client: WS
    board: Board = field(default_factory=dict)
    seen: set[tuple[str, int]] = field(default_factory=set)
    applied: int = 0
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def event(self, within: float = 2 * SETTLE_SECONDS) -> dict[str, Any]:
        # Idle only while a round's boards are compared: a minute is a stream that stopped.
        message = await self.client.receive(within=within)
        assert message.get("id") == "1" and message["type"] == "next", message
        assert "errors" not in message["payload"], message
        return message["payload"]["data"]["taskEvents"]  # type: ignore[no-any-return]

    def take(self, event: dict[str, Any]) -> None:
        task = event["task"]
        assert task["id"] not in {d["id"] for d in event["displaced"]}, event
        apply(self.board, event)
        columns(self.board)  # every column exactly 0..n-1, so no place taken twice
        if event["type"] == "DELETED":
            assert task["id"] not in self.board, event
        else:
            here = self.board[task["id"]]
            assert (here["status"], here["position"]) == (task["status"], task["position"]), event
        self.seen.add((task["id"], GONE if event["type"] == "DELETED" else task["version"]))
        self.applied += 1

    async def follow(self) -> None:
        while True:
            event = await self.event()
            async with self.changed:
                self.take(event)
                self.changed.notify_all()

    async def settled(self, written: set[tuple[str, int]]) -> None:
        """Until the event of every (task, version) the writers were answered with, and of
        every deletion, has arrived."""
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(lambda: written <= self.seen), SETTLE_SECONDS)


def positions(board: Board) -> dict[str, dict[str, Any]]:
    """What the Apollo side keeps of a board: each task's column and place in it."""
    return {task_id: {"status": t["status"], "position": t["position"]} for task_id, t in board.items()}


@dataclass
class CachedBoard:
    """The same events through Apollo Client's normalized cache (tests/clients/board.mjs, which
    loads its own snapshot and subscribes after the probe's cursor): `APPLIED n` per event, read
    in the background, and `BOARD <json>` when told DUMP."""

    script: NodeScript
    applied: int = 0
    ended: bool = False
    boards: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    @classmethod
    async def start(
        cls, stack: contextlib.AsyncExitStack, server: LiveServer, token: str, project: str, after: str
    ) -> CachedBoard:
        node = node_for(CLIENTS, ["@apollo/client", "@pulseboard/client", "ws"])
        args = ["--http-url", server.url + "/graphql", "--ws-url", server.ws_url, "--token", token]
        args += ["--project", project, "--after", after]
        script = await stack.enter_async_context(
            run_script(node, CLIENTS / "board.mjs", *args, timeout_ms=CACHE_DEADLINE_MS)
        )
        await script.expect("READY")
        cached = cls(script)
        reading = asyncio.create_task(cached.read())
        stack.push_async_callback(cancelled, reading)
        return cached

    async def read(self) -> None:
        """Every line, until the script exits (no deadline here: the test waits with its own)."""
        assert self.script.process.stdout is not None
        try:
            while raw := await self.script.process.stdout.readline():
                kind, _, rest = raw.decode().rstrip("\n").partition(" ")
                if kind == "BOARD":
                    await self.boards.put(json.loads(rest))
                    continue
                assert kind == "APPLIED", raw
                async with self.changed:
                    self.applied = int(rest)
                    self.changed.notify_all()
        finally:
            async with self.changed:
                self.ended = True
                self.changed.notify_all()

    async def board(self, applied: int, within: float = 2 * SETTLE_SECONDS) -> dict[str, Any]:
        """The cache's board, once it has applied as many events as the follower."""
        async with self.changed:
            caught_up = self.changed.wait_for(lambda: self.ended or self.applied >= applied)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(caught_up, within)
        if self.ended:
            await self.script.process.wait()
            code, stderr = self.script.process.returncode, await self.script.stderr()
            raise AssertionError(f"board.mjs exited ({code}): {stderr}")
        assert self.applied == applied, f"Apollo's cache applied {self.applied} events, not {applied}"
        await self.script.send("DUMP")
        return await asyncio.wait_for(self.boards.get(), TIMEOUT)

    async def exit(self) -> None:
        await self.script.send("EXIT")
        code = await self.script.exit_code()
        assert code == 0, (code, await self.script.stderr())


async def cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@dataclass
class Writer:
    """One person changing the board through an HTTP client of their own."""

    server: LiveServer
    token: str
    project: str
    members: list[str]
    rng: random.Random
    tasks: dict[str, int]  # the ids the writers know of, and the last version they were told
    written: set[tuple[str, int]]
    done: dict[str, int] = field(default_factory=dict)  # operations that changed something, by kind
    refused: int = 0

    async def run(self, http: httpx.AsyncClient, operations: int) -> None:
        for _ in range(operations):
            await self.one(http)

    async def one(self, http: httpx.AsyncClient) -> None:
        rng = self.rng
        kind = rng.choices(("create", "move", "complete", "delete", "assign"), (25, 40, 10, 10, 15))[0]
        if not self.tasks:
            kind = "create"
        task = rng.choice(sorted(self.tasks)) if self.tasks else None
        # Sometimes the version last seen, so that writers racing for one task conflict.
        version = self.tasks.get(task) if task is not None and rng.random() < 0.3 else None
        variables: dict[str, Any]
        if kind == "create":
            variables = {"p": self.project, "t": f"T{rng.randrange(10**6)}", "s": rng.choice(COLUMNS)}
            variables["a"] = rng.choice([*self.members, None])
        elif kind == "move":
            # Positions up to past the end of any column: those land at its end.
            variables = {"id": task, "s": rng.choice(COLUMNS), "at": rng.randrange(15), "v": version}
        elif kind == "assign":
            variables = {"id": task, "a": rng.choice([*self.members, None]), "v": version}
        else:
            variables = {"id": task}
        response = await http.post(
            self.server.url + "/graphql",
            json={"query": OPERATIONS[kind], "variables": variables},
            headers={"authorization": f"Bearer {self.token}"},
        )
        body = response.json()
        if body.get("errors"):
            refusal = body["errors"][0]["extensions"]["code"]
            assert refusal in EXPECTED_REFUSALS, (kind, variables, body)
            if refusal == "NOT_FOUND":
                self.tasks.pop(task or "", None)  # deleted by another writer meanwhile
            self.refused += 1
            return
        result = next(iter(body["data"].values()))
        if kind != "delete":
            self.written.add((result["id"], result["version"]))
        self.done[kind] = self.done.get(kind, 0) + 1
        if kind == "delete":
            self.written.add((result["id"], GONE))
            self.tasks.pop(result["id"], None)
        else:
            self.tasks[result["id"]] = result["version"]


def seed() -> int:
    chosen = os.environ.get("PULSEBOARD_TEST_BOARD_SEED")
    return int(chosen) if chosen else random.SystemRandom().randrange(2**32)


async def test_a_board_kept_from_events_equals_the_servers_after_every_round(server: LiveServer) -> None:
    chosen = seed()
    print(f"board property seed {chosen} (replay: PULSEBOARD_TEST_BOARD_SEED={chosen})")
    rng = random.Random(chosen)
    tokens = [server.token(f"{name}@example.test") for name in ("ada", "bob", "cy")]
    project = (await server.gql(tokens[0], PROJECT, n="Property"))["createProject"]["id"]
    members = [(await server.gql(t, "{ viewer { id } }"))["viewer"]["id"] for t in tokens]
    admin = server.token("admin@example.test", Role.ADMIN)
    for member in members[1:]:
        await server.gql(admin, ADD_MEMBER, p=project, u=member)
    known: dict[str, int] = {}
    for i in range(INITIAL_TASKS):
        created = await server.gql(tokens[i % 3], CREATE, p=project, t=f"Initial {i}", s=rng.choice(COLUMNS))
        known[created["createTask"]["id"]] = 1
    probe = min(known)

    async with ws(server, tokens[0]) as client:
        follower = Follower(client)
        # Subscribed first, then writes of our own until one's event arrives: the stream is live
        # (the protocol does not acknowledge a subscribe), and the snapshot taken after it, with
        # nobody writing, holds every event that came before.
        await client.subscribe("1", EVENTS, p=project)
        for attempt in range(20):
            title = f"Probe {attempt}"
            known[probe] = (await server.gql(tokens[0], PROBE, id=probe, t=title))["updateTask"]["version"]
            with contextlib.suppress(TimeoutError):
                while (probed := await follower.event(within=1.0))["task"]["title"] != title:
                    pass
                break
        else:
            raise AssertionError("the subscription never delivered an event")
        follower.board = await server_board(server, tokens[0], project)
        follower.seen = {(task_id, version) for task_id, version in known.items()}
        assert set(follower.board) == set(known)
        following = asyncio.create_task(follower.follow())
        written: set[tuple[str, int]] = set()
        writers = [
            Writer(server, token, project, members, random.Random(rng.random()), known, written)
            for token in tokens
        ]
        try:
            async with contextlib.AsyncExitStack() as stack:
                # Apollo's side subscribes after the probe's event, so sees the follower's events.
                cached = await CachedBoard.start(stack, server, tokens[0], project, probed["cursor"])
                https = [await stack.enter_async_context(http_client(timeout=30)) for _ in writers]
                for number in range(ROUNDS):
                    shares = [OPS_PER_ROUND // 3 + (i < OPS_PER_ROUND % 3) for i in range(3)]
                    await asyncio.gather(
                        *(w.run(h, n) for w, h, n in zip(writers, https, shares, strict=True))
                    )
                    try:
                        await follower.settled(written)
                    except TimeoutError:
                        if following.done():
                            following.result()  # the follower's own failure, if it failed
                        missing = sorted(written - follower.seen)
                        raise AssertionError(
                            f"seed {chosen}, round {number}: never arrived: {missing}"
                        ) from None
                    async with follower.changed:  # no event is applied while the boards are compared
                        expected = await server_board(server, tokens[0], project)
                        assert follower.board == expected, f"seed {chosen}, round {number}"
                    cache = await cached.board(follower.applied)
                    assert cache == positions(expected), f"seed {chosen}, round {number}: Apollo's cache"
                await cached.exit()
        finally:
            await cancelled(following)
    done: dict[str, int] = {}
    for writer in writers:
        for kind, count in writer.done.items():
            done[kind] = done.get(kind, 0) + count
    refused = sum(w.refused for w in writers)
    print(f"changes by kind {done}, refused {refused}, events applied {follower.applied}")
    assert sum(done.values()) + refused == ROUNDS * OPS_PER_ROUND
    # Every kind of operation really ran, and most changed the board.
    assert set(done) == set(OPERATIONS), done
    assert refused < ROUNDS * OPS_PER_ROUND // 2, (done, refused)
    # One event per change, none twice: creates, moves and deletes always change something;
    # completing a done task or assigning the same person again changes nothing, and says nothing.
    always = done["create"] + done["move"] + done["delete"]
    assert always <= follower.applied <= sum(done.values()), (done, follower.applied)
