"""Fan-out benchmark: `python -m pulseboard serve --workers 2` on PostgreSQL + Redis, N websocket
subscribers to taskEvents spread over P projects, updateTask mutations at a fixed total rate.

    .venv/bin/python bench/fanout.py --subscribers 1000 --projects 20 --rate 20 --duration 20

Prints delivered events/s, p50/p95/p99 publish-to-receive latency (the mutation's send time, put
in the task title, to the moment this process reads the event off its socket), gaps, duplicates,
and the server's CPU and RSS (the uvicorn supervisor and its worker processes).

Everything it creates is its own and is removed at the end: a fresh database `bench_<random>` on
the local PostgreSQL, one server process group on a free loopback port. Only loopback addresses
are accepted. Every phase is bounded in time. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import json
import os
import random
import resource
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pulseboard.auth import mint_token  # noqa: E402
from pulseboard.models import Role  # noqa: E402

PROTOCOL = "graphql-transport-ws"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
CLK_TCK = os.sysconf("SC_CLK_TCK")

SELECTIONS = {
    # What a board client would ask for: `actor` is a User resolved through a DataLoader.
    "full": "cursor type occurredAt task { id title version } actor { id } changes { field from to }",
    # `full` without `actor`: every field comes from the event itself, nothing is loaded.
    "no-actor": "cursor type occurredAt task { id title version } changes { field from to }",
    # The least a client can ask for and still be measured.
    "lean": "cursor task { title }",
}

CREATE_PROJECT = "mutation($name: String!) { createProject(input: {name: $name}) { id } }"
CREATE_TASK = (
    "mutation($projectId: ID!, $title: String!) "
    "{ createTask(input: {projectId: $projectId, title: $title}) { id } }"
)
UPDATE_TASK = (
    "mutation($id: ID!, $title: String!) { updateTask(id: $id, input: {title: $title}) { version } }"
)


# ---------------------------------------------------------------------------------------------
# Process statistics from /proc (no psutil in the project's environment)


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry))
    return children


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants."""
    children = _children_map()
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def cpu_ticks(pid: int) -> int:
    """utime + stime of `pid` in clock ticks (0 if it is gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # user..steal; guest time is already counted in user
    return total - idle, total


class ProcessWatch:
    """CPU seconds of a process tree over a window, and the peak of its summed RSS (sampled)."""

    def __init__(self, root: int, interval: float = 0.25) -> None:
        self.root = root
        self.interval = interval
        self.peak_rss_kib = 0
        self.pids: list[int] = []
        self._start: dict[int, int] = {}
        self._task: asyncio.Task[None] | None = None

    def sample(self) -> None:
        self.pids = process_tree(self.root)
        self.peak_rss_kib = max(self.peak_rss_kib, sum(rss_kib(p) for p in self.pids))

    def start(self) -> None:
        self.sample()
        self._start = {p: cpu_ticks(p) for p in self.pids}
        self._task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.sample()

    async def stop(self) -> float:
        """CPU seconds (user + system) the tree used since start()."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.sample()
        ticks = sum(max(0, cpu_ticks(p) - self._start.get(p, 0)) for p in self.pids)
        return ticks / CLK_TCK


class TicksOf:
    """CPU seconds of a changing set of processes over a window (those seen at the end; one
    that appeared during the window counts whole)."""

    def __init__(self, pids: list[int]) -> None:
        self.start = {p: cpu_ticks(p) for p in pids}

    def seconds(self, pids: list[int]) -> float:
        return sum(max(0, cpu_ticks(p) - self.start.get(p, 0)) for p in pids) / CLK_TCK


async def backend_pids(admin_url: str, database: str) -> list[int]:
    """PostgreSQL backends serving `database` (the server's pools)."""
    conn = await asyncpg.connect(admin_url, timeout=10)
    try:
        rows = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", database)
    finally:
        await conn.close()
    return [row["pid"] for row in rows]


def pids_named(name: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if Path(f"/proc/{entry}/comm").read_text().strip() == name:
                    found.append(int(entry))
    return found


class LoopLag:
    """How late this process's event loop wakes a 10 ms sleeper: when the client itself falls
    behind, its receive timestamps (and so the latencies) are late too."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.01)
            self.lags.append(time.perf_counter() - before - 0.01)

    async def stop(self) -> list[float]:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        return sorted(self.lags)


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ---------------------------------------------------------------------------------------------
# Database and server


def require_loopback(url: str, what: str) -> None:
    host = urlsplit(url).hostname
    if host not in LOOPBACK:
        sys.exit(f"fanout: {what} must be on the loopback interface, not {host!r}")


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, "", ""))


async def create_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url, timeout=10)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def drop_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url, timeout=10)
    try:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
    finally:
        await conn.close()


async def offset_project_ids(database_url: str, start: int) -> None:
    """Starts project ids at `start`. Redis pub/sub channels are global (not per database), so
    `project:1` of a test suite running at the same time on the same Redis would otherwise reach
    (and be replayed into) this benchmark's streams, and ours into theirs."""
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        await conn.execute("SELECT setval(pg_get_serial_sequence('projects', 'id'), $1, false)", start)
    finally:
        await conn.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(args: argparse.Namespace, database_url: str, secret: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULSEBOARD_")}
    if args.db_pool_max:
        # Tortoise reads pool bounds from the URL (its asyncpg default is at most 5 per worker).
        database_url += f"?maxsize={args.db_pool_max}"
    env.update(
        PULSEBOARD_ENV="development",
        PULSEBOARD_DATABASE_URL=database_url,
        PULSEBOARD_BROADCAST_URL=args.redis_url,
        PULSEBOARD_JWT_SECRET=secret,
        PULSEBOARD_LOG_LEVEL="WARNING",
        PULSEBOARD_WS_PER_MESSAGE_DEFLATE="true" if args.deflate else "false",
        # Keep the periodic queue-metrics refresh out of the measurement.
        PULSEBOARD_METRICS_INTERVAL_SECONDS="3600",
        # One admin drives every mutation: lift the per-user rate limit out of the way.
        PULSEBOARD_MUTATIONS_PER_SECOND="100000",
        PULSEBOARD_MUTATION_BURST="100000",
    )
    return env


def migrate(env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pulseboard", "migrate"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        raise RuntimeError(f"migrate failed:\n{result.stdout}\n{result.stderr}")


def start_server(env: dict[str, str], port: int, workers: int, log: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "pulseboard", "serve", "--workers", str(workers), "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: the workers can be killed with it
    )


async def wait_healthy(url: str, process: subprocess.Popen[bytes], workers: int, within: float) -> None:
    """Until /healthz answers and the supervisor has its worker processes."""
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(timeout=1, trust_env=False) as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}")
            with contextlib.suppress(httpx.TransportError):
                healthy = (await http.get(url + "/healthz")).status_code == 200
                if healthy and len(process_tree(process.pid)) > workers:
                    # Every worker answers: give the others a moment to finish their lifespan.
                    ok = 0
                    for _ in range(4 * workers):
                        with contextlib.suppress(httpx.TransportError):
                            ok += (await http.get(url + "/healthz")).status_code == 200
                    if ok == 4 * workers:
                        return
            await asyncio.sleep(0.2)
    raise RuntimeError("server did not become healthy in time")


def stop_server(process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=timeout)
    # Whatever is left in its process group (workers of a supervisor that did not stop in time).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


# ---------------------------------------------------------------------------------------------
# Clients


class GraphQLError(RuntimeError):
    pass


async def gql(http: httpx.AsyncClient, auth: dict[str, str], query: str, **variables: Any) -> dict[str, Any]:
    response = await http.post("/graphql", json={"query": query, "variables": variables}, headers=auth)
    if response.status_code != 200 and not response.headers.get("content-type", "").startswith(
        "application/json"
    ):
        raise GraphQLError(f"HTTP {response.status_code}: {response.text[:200]}")
    body = response.json()
    if body.get("errors"):
        raise GraphQLError(json.dumps(body["errors"])[:300])
    return body["data"]  # type: ignore[no-any-return]


async def setup_gql(
    http: httpx.AsyncClient, auth: dict[str, str], query: str, **variables: Any
) -> dict[str, Any]:
    """gql for setup (not measured): a transport error is retried twice, and an overloaded
    server's 503 SERVICE_UNAVAILABLE (it sheds while its event loop lags, as it may right after an
    overload row) for up to a minute, as its Retry-After asks."""
    failures = 0
    for _ in range(60):
        try:
            return await gql(http, auth, query, **variables)
        except httpx.TransportError:
            failures += 1
            if failures == 3:
                raise
            await asyncio.sleep(0.5)
        except GraphQLError as error:
            if "SERVICE_UNAVAILABLE" not in str(error):
                raise
            await asyncio.sleep(1)
    raise GraphQLError(f"still overloaded after a minute: {query[:60]}")


def seq_of(cursor: str) -> tuple[str, int]:
    topic, _, seq = base64.urlsafe_b64decode(cursor.encode()).decode().rpartition("#")
    return topic, int(seq)


@dataclass
class Subscriber:
    index: int
    project: str
    conn: ClientConnection | None = None
    connected: bool = False
    error: str | None = None
    closed: str | None = None
    seqs: Counter[int] = field(default_factory=Counter)
    max_seq: int = 0
    out_of_order: int = 0
    warm_round: int = -1  # the last warm-up round seen
    latencies: list[float] = field(default_factory=list)  # seconds, measured events only
    last_receive: float = 0.0
    errors: list[str] = field(default_factory=list)
    foreign: int = 0  # events for a topic other than its project's


class Bench:
    def __init__(self, args: argparse.Namespace, url: str, secret: str) -> None:
        self.args = args
        self.url = url
        self.ws_url = url.replace("http://", "ws://") + "/graphql"
        self.secret = secret
        self._tokens: dict[str, str] = {}
        self.selection = SELECTIONS[args.selection]
        self.subscribers: list[Subscriber] = []
        self.readers: list[asyncio.Task[None]] = []

    def token(self, who: str) -> str:
        """An ADMIN token (admins see every project) for the user `who`, created on first sight."""
        if who not in self._tokens:
            self._tokens[who] = mint_token(
                self.secret,
                sub=who,
                email=f"{who}@example.test",
                name=who,
                role=Role.ADMIN,
                ttl=dt.timedelta(hours=2),
            )
        return self._tokens[who]

    def auth(self, who: str) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token(who)}"}

    def writer(self, project: str) -> dict[str, str]:
        """Each project has its own writer, so no user exceeds the server's per-user mutation
        rate (the total --rate is spread over --projects users)."""
        return self.auth(f"bench-writer-{project}")

    # --- subscribers -------------------------------------------------------------------------

    async def open_subscriber(self, sub: Subscriber, gate: asyncio.Semaphore) -> None:
        async with gate:
            try:
                conn = await connect(
                    self.ws_url,
                    subprotocols=[PROTOCOL],  # type: ignore[list-item]
                    compression="deflate" if self.args.deflate else None,
                    proxy=None,
                    open_timeout=30,
                    ping_interval=None,  # the server pings; the client answers
                    close_timeout=5,
                    max_queue=None,  # never stall the socket on a slow reader: measure it instead
                )
                # One user per socket, as browsers would be (the server limits sockets per user).
                init = {"type": "connection_init", "payload": self.auth(f"bench-sub-{sub.index}")}
                await conn.send(json.dumps(init))
                ack = json.loads(await asyncio.wait_for(conn.recv(), 30))
                if ack.get("type") != "connection_ack":
                    raise RuntimeError(f"no connection_ack: {ack}")
                query = f"subscription($p: ID!) {{ taskEvents(projectId: $p) {{ {self.selection} }} }}"
                payload = {"query": query, "variables": {"p": sub.project}}
                await conn.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
            except Exception as error:  # counted and reported
                sub.error = f"{type(error).__name__}: {error}"[:200]
                return
        sub.conn = conn
        sub.connected = True
        self.readers.append(asyncio.create_task(self.read(sub, conn)))

    async def read(self, sub: Subscriber, conn: ClientConnection) -> None:
        expected_topic = f"project:{sub.project}"
        try:
            async for raw in conn:
                now = time.perf_counter()
                message = json.loads(raw)
                kind = message.get("type")
                if kind == "ping":
                    await conn.send(json.dumps({"type": "pong"}))
                    continue
                if kind != "next":
                    sub.errors.append(json.dumps(message)[:300])
                    continue
                payload = message["payload"]
                if payload.get("errors"):
                    sub.errors.append(json.dumps(payload["errors"])[:300])
                    continue
                event = payload["data"]["taskEvents"]
                topic, seq = seq_of(event["cursor"])
                if topic != expected_topic:
                    sub.foreign += 1
                    continue
                if seq < sub.max_seq:
                    sub.out_of_order += 1
                sub.max_seq = max(sub.max_seq, seq)
                title: str = event["task"]["title"]
                if title.startswith("warmup "):
                    sub.warm_round = max(sub.warm_round, int(title.split()[1]))
                    continue
                sub.seqs[seq] += 1
                sub.last_receive = now
                if title.startswith("bench "):
                    sent = int(title.split()[2]) / 1e9
                    sub.latencies.append(now - sent)
        except ConnectionClosed as closed:
            if closed.rcvd is not None and closed.rcvd.code != 1000:
                sub.closed = f"{closed.rcvd.code} {closed.rcvd.reason}"
            elif closed.rcvd is None and closed.sent is None:
                sub.closed = "closed without a close frame"
        except Exception as error:  # counted and reported
            sub.closed = f"{type(error).__name__}: {error}"[:200]

    async def open_all(self, projects: list[str]) -> float:
        n = self.args.subscribers
        self.subscribers = [Subscriber(i, projects[i % len(projects)]) for i in range(n)]
        gate = asyncio.Semaphore(self.args.connect_concurrency)
        started = time.perf_counter()
        opening = [asyncio.create_task(self.open_subscriber(s, gate)) for s in self.subscribers]
        _, pending = await asyncio.wait(opening, timeout=self.args.connect_timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for sub in self.subscribers:
            if not sub.connected and sub.error is None:
                sub.error = "connect phase timed out"
        return time.perf_counter() - started

    async def close_all(self) -> None:
        async def close(sub: Subscriber) -> None:
            if sub.conn is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(sub.conn.close(), 5)

        gate = asyncio.Semaphore(100)

        async def gated(sub: Subscriber) -> None:
            async with gate:
                await close(sub)

        await asyncio.wait_for(
            asyncio.gather(*(gated(s) for s in self.subscribers), return_exceptions=True), 60
        )
        for task in self.readers:
            task.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)

    def live(self) -> list[Subscriber]:
        return [s for s in self.subscribers if s.connected and s.closed is None]

    # --- warm-up: every subscription live before measuring -----------------------------------

    async def warm_up(self, http: httpx.AsyncClient, tasks: dict[str, str]) -> tuple[int, float]:
        """updateTask once per project per round until every open subscriber has received the
        round's event (its subscription is live). Returns (rounds, seconds)."""
        started = time.perf_counter()
        for round_ in range(self.args.warmup_rounds):
            await asyncio.gather(
                *(
                    setup_gql(http, self.writer(project), UPDATE_TASK, id=task, title=f"warmup {round_}")
                    for project, task in tasks.items()
                )
            )
            deadline = time.perf_counter() + self.args.warmup_timeout
            while time.perf_counter() < deadline:
                if all(s.warm_round >= round_ for s in self.live()):
                    return round_ + 1, time.perf_counter() - started
                await asyncio.sleep(0.05)
        return self.args.warmup_rounds, time.perf_counter() - started

    # --- the driver --------------------------------------------------------------------------

    async def drive(self, http: httpx.AsyncClient, tasks: dict[str, str]) -> dict[str, Any]:
        """updateTask at a fixed total rate, round-robin over the projects, open loop: a send is
        never delayed by the answers of earlier ones (a send that would exceed --max-inflight is
        skipped and counted)."""
        rate, count = self.args.rate, int(self.args.rate * self.args.duration)
        projects = list(tasks)
        ok: Counter[str] = Counter()
        failed: list[str] = []
        skipped = 0
        late = 0.0
        gate = asyncio.Semaphore(self.args.max_inflight)
        response_times: list[float] = []

        async def send(i: int, project: str) -> None:
            try:
                sent = time.perf_counter()
                title = f"bench {i} {time.perf_counter_ns()}"
                await gql(http, self.writer(project), UPDATE_TASK, id=tasks[project], title=title)
                response_times.append(time.perf_counter() - sent)
                ok[project] += 1
            except Exception as error:  # counted and reported
                failed.append(f"{type(error).__name__}: {error}"[:200])
            finally:
                gate.release()

        sends: list[asyncio.Task[None]] = []
        started = time.perf_counter()
        for i in range(count):
            due = started + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                late = max(late, -delay)
            if gate.locked():
                skipped += 1
                continue
            await gate.acquire()
            sends.append(asyncio.create_task(send(i, projects[i % len(projects)])))
        sending = time.perf_counter() - started
        _, pending = await asyncio.wait(sends, timeout=30) if sends else (set(), set())
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        response_times.sort()
        return {
            "started": started,
            "sending_seconds": sending,
            "attempted": count,
            "ok": ok,
            "failed": failed,
            "unanswered": len(pending),
            "skipped": skipped,
            "max_late_ms": late * 1000,
            "mutation_p50_ms": percentile(response_times, 50) * 1000,
            "mutation_p99_ms": percentile(response_times, 99) * 1000,
        }

    async def drain(self, final: dict[str, int]) -> None:
        """Until every live subscriber has seen its project's last seq, or --drain-timeout."""
        deadline = time.perf_counter() + self.args.drain_timeout
        while time.perf_counter() < deadline:
            if all(s.max_seq >= final[s.project] for s in self.live()):
                return
            await asyncio.sleep(0.05)


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list (0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), round(p / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


# ---------------------------------------------------------------------------------------------
# The run


async def wait_idle(within: float, threshold: float = 35.0) -> float:
    """Waits (at most `within` s) for 2 s in which the machine is less than `threshold` % busy;
    the last busy figure seen."""
    deadline = time.monotonic() + within
    while True:
        busy_0, total_0 = machine_ticks()
        await asyncio.sleep(2)
        busy_1, total_1 = machine_ticks()
        busy = 100 * (busy_1 - busy_0) / max(1, total_1 - total_0)
        if busy < threshold or time.monotonic() > deadline:
            return busy
        status(f"machine {busy:.0f}% busy: waiting for it to calm down")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    admin_url = args.database_url
    db_name = f"bench_{secrets.token_hex(4)}"
    database_url = with_database(admin_url, db_name)
    secret = secrets.token_urlsafe(48)
    env = server_env(args, database_url, secret)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    result: dict[str, Any] = {
        "subscribers": args.subscribers,
        "projects": args.projects,
        "rate": args.rate,
        "duration": args.duration,
        "selection": args.selection,
        "deflate": args.deflate,
        "workers": args.workers,
        "db_pool_max": args.db_pool_max or 5,
        "revision": revision(),
    }
    log = tempfile.NamedTemporaryFile(prefix="fanout-server-", suffix=".log", delete=False)  # noqa: SIM115
    process: subprocess.Popen[bytes] | None = None
    bench: Bench | None = None
    if args.wait_idle:
        await wait_idle(args.wait_idle)
    await create_database(admin_url, db_name)
    try:
        await asyncio.to_thread(migrate, env)
        await offset_project_ids(database_url, random.randint(10**8, 2 * 10**9))
        process = start_server(env, port, args.workers, log)
        await wait_healthy(url, process, args.workers, within=60)
        tree = process_tree(process.pid)
        status(f"server up on {url} (pid {process.pid}, processes {tree}), database {db_name}")

        # Idle connections are dropped before uvicorn's 5 s keep-alive timeout closes them, so a
        # request never races the server closing its connection.
        limits = httpx.Limits(
            max_connections=args.max_inflight, max_keepalive_connections=args.max_inflight, keepalive_expiry=2
        )
        async with httpx.AsyncClient(
            base_url=url,
            timeout=30,
            limits=limits,
            trust_env=False,
        ) as http:
            bench = Bench(args, url, secret)
            admin = bench.auth("bench-admin")
            projects: list[str] = []
            tasks: dict[str, str] = {}
            for p in range(args.projects):
                created = await setup_gql(http, admin, CREATE_PROJECT, name=f"bench project {p}")
                project = created["createProject"]["id"]
                created = await setup_gql(http, admin, CREATE_TASK, projectId=project, title="seed")
                projects.append(project)
                tasks[project] = created["createTask"]["id"]

            connect_seconds = await bench.open_all(projects)
            connected = sum(s.connected for s in bench.subscribers)
            status(f"{connected}/{args.subscribers} subscribers connected in {connect_seconds:.1f}s")
            rounds, warm_seconds = await bench.warm_up(http, tasks)
            live = bench.live()
            not_live = [s for s in live if s.warm_round < 0]
            status(f"warm-up: {rounds} round(s), {warm_seconds:.1f}s; {len(not_live)} subscriber(s) not live")
            # Measured events are those after the last warm-up seq of each project.
            baseline = {p: max((s.max_seq for s in live if s.project == p), default=0) for p in projects}

            # Background load: other work on this machine competes for the same cores.
            busy_0, total_0 = machine_ticks()
            await asyncio.sleep(1)
            busy_1, total_1 = machine_ticks()
            result["machine_busy_before_pct"] = round(100 * (busy_1 - busy_0) / max(1, total_1 - total_0), 1)

            watch = ProcessWatch(process.pid)
            watch.start()
            postgres = TicksOf(await backend_pids(admin_url, db_name))
            redis = TicksOf(pids_named("redis-server"))
            lag = LoopLag()
            lag.start()
            cpu_client_0 = own_cpu_seconds()
            busy_0, total_0 = machine_ticks()
            driven = await bench.drive(http, tasks)
            final = {p: baseline[p] + driven["ok"][p] for p in projects}
            await bench.drain(final)
            window = time.perf_counter() - driven["started"]
            server_cpu = await watch.stop()
            client_cpu = own_cpu_seconds() - cpu_client_0
            lags = await lag.stop()
            busy_1, total_1 = machine_ticks()
            postgres_cpu = postgres.seconds(await backend_pids(admin_url, db_name))
            redis_cpu = redis.seconds(pids_named("redis-server"))

        # Account per subscriber over the seqs it should have seen: (baseline, final].
        # A gap is a seq missing below the highest one a subscriber received (a hole in its
        # stream); an undelivered event is one above it that had not arrived by the end of the
        # drain (late, or lost at the tail).
        expected = delivered = gaps = undelivered = duplicates = out_of_order = foreign = 0
        latencies: list[float] = []
        last_receive = driven["started"]
        for sub in bench.subscribers:
            low, high = baseline[sub.project], final[sub.project]
            expected += max(0, high - low)
            got = {seq for seq in sub.seqs if low < seq <= high}
            delivered += len(got)
            top = min(high, max(got, default=low))
            gaps += (top - low) - len(got)
            undelivered += high - top
            duplicates += sum(c - 1 for c in sub.seqs.values() if c > 1)
            out_of_order += sub.out_of_order
            foreign += sub.foreign
            latencies.extend(sub.latencies)
            last_receive = max(last_receive, sub.last_receive)
        latencies.sort()
        span = max(1e-9, last_receive - driven["started"])
        sent_ok = sum(driven["ok"].values())
        result.update(
            connected=sum(s.connected for s in bench.subscribers),
            connect_seconds=round(connect_seconds, 2),
            connect_errors=Counter(s.error for s in bench.subscribers if s.error),
            warmup_rounds=rounds,
            mutations_attempted=driven["attempted"],
            mutations_sent=sent_ok,
            mutations_failed=len(driven["failed"]),
            mutation_errors=Counter(driven["failed"]).most_common(3),
            mutations_unanswered=driven["unanswered"],
            mutations_skipped=driven["skipped"],
            driver_max_late_ms=round(driven["max_late_ms"], 1),
            mutation_p50_ms=round(driven["mutation_p50_ms"], 1),
            mutation_p99_ms=round(driven["mutation_p99_ms"], 1),
            events_expected=expected,
            events_delivered=delivered,
            delivered_per_s=round(delivered / span, 1),
            expected_per_s=round(args.rate * args.subscribers / args.projects, 1),
            delivery_span_s=round(span, 2),
            latency_p50_ms=round(percentile(latencies, 50) * 1000, 1),
            latency_p95_ms=round(percentile(latencies, 95) * 1000, 1),
            latency_p99_ms=round(percentile(latencies, 99) * 1000, 1),
            latency_max_ms=round((latencies[-1] if latencies else 0) * 1000, 1),
            gaps=gaps,
            undelivered=undelivered,
            duplicates=duplicates,
            out_of_order=out_of_order,
            foreign_events=foreign,
            subscription_errors=Counter(e for s in bench.subscribers for e in s.errors).most_common(3),
            closed_by_server=Counter(s.closed for s in bench.subscribers if s.closed).most_common(3),
            window_s=round(window, 2),
            server_cpu_s=round(server_cpu, 2),
            server_cpu_pct=round(100 * server_cpu / window, 1),
            server_peak_rss_mib=round(watch.peak_rss_kib / 1024, 1),
            server_processes=len(watch.pids),
            client_cpu_s=round(client_cpu, 2),
            client_cpu_pct=round(100 * client_cpu / window, 1),
            client_loop_lag_p99_ms=round(percentile(lags, 99) * 1000, 1),
            client_loop_lag_max_ms=round((lags[-1] if lags else 0) * 1000, 1),
            postgres_cpu_s=round(postgres_cpu, 2),
            postgres_cpu_pct=round(100 * postgres_cpu / window, 1),
            redis_cpu_s=round(redis_cpu, 2),
            machine_busy_pct=round(100 * (busy_1 - busy_0) / max(1, total_1 - total_0), 1),
            cores=os.cpu_count(),
        )
        return result
    finally:
        if bench is not None:
            with contextlib.suppress(Exception):
                await bench.close_all()
        if process is not None:
            await asyncio.to_thread(stop_server, process)
        log.close()
        problems = await asyncio.to_thread(read_server_log, log.name, args.keep_server_log)
        result["server_log_problems"] = len(problems)
        result["server_log_tail"] = problems[:5]
        await drop_database(admin_url, db_name)


def read_server_log(path: str, keep: str | None) -> list[str]:
    """The server's ERROR / Traceback / CRITICAL lines; the log is removed (or kept at `keep`)."""
    text = Path(path).read_text(errors="replace")
    Path(path).unlink(missing_ok=True)
    if keep:
        Path(keep).write_text(text)
    markers = ("ERROR", "Traceback", "CRITICAL")
    return [line for line in text.splitlines() if any(m in line for m in markers)]


def revision() -> str:
    """The commit measured, with `+dirty` when the server's code has uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "pulseboard"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head or "unknown") + ("+dirty" if dirty else "")


def status(text: str) -> None:
    print(f"[fanout] {text}", file=sys.stderr, flush=True)


ROWS = [
    ("subscribers", "subscribers (connected)", lambda r: f"{r['subscribers']} ({r['connected']})"),
    ("projects", "projects", lambda r: r["projects"]),
    ("rate", "mutation rate (/s)", lambda r: r["rate"]),
    (
        "sent",
        "mutations sent (ok / failed / skipped)",
        lambda r: f"{r['mutations_sent']} / {r['mutations_failed']} / {r['mutations_skipped']}",
    ),
    ("expected", "events expected", lambda r: r["events_expected"]),
    ("delivered", "events delivered", lambda r: r["events_delivered"]),
    ("eps", "delivered events/s (offered)", lambda r: f"{r['delivered_per_s']} ({r['expected_per_s']})"),
    (
        "lat",
        "latency p50 / p95 / p99 (ms)",
        lambda r: f"{r['latency_p50_ms']} / {r['latency_p95_ms']} / {r['latency_p99_ms']}",
    ),
    ("max", "latency max (ms)", lambda r: r["latency_max_ms"]),
    (
        "gaps",
        "gaps / duplicates / out of order",
        lambda r: f"{r['gaps']} / {r['duplicates']} / {r['out_of_order']}",
    ),
    ("late", "undelivered at the end of the drain", lambda r: r["undelivered"]),
    (
        "mut",
        "mutation round trip p50 / p99 (ms)",
        lambda r: f"{r['mutation_p50_ms']} / {r['mutation_p99_ms']}",
    ),
    ("cpu", "server CPU s (% of one core)", lambda r: f"{r['server_cpu_s']} ({r['server_cpu_pct']}%)"),
    (
        "rss",
        "server peak RSS, all processes (MiB)",
        lambda r: f"{r['server_peak_rss_mib']} ({r['server_processes']} processes)",
    ),
    (
        "client",
        "bench client CPU s (% of one core)",
        lambda r: f"{r['client_cpu_s']} ({r['client_cpu_pct']}%)",
    ),
    (
        "lag",
        "bench client loop lag p99 / max (ms)",
        lambda r: f"{r['client_loop_lag_p99_ms']} / {r['client_loop_lag_max_ms']}",
    ),
    (
        "pg",
        "PostgreSQL backends of the bench db CPU s (%)",
        lambda r: f"{r['postgres_cpu_s']} ({r['postgres_cpu_pct']}%)",
    ),
    ("redis", "redis-server CPU s (whole server)", lambda r: r["redis_cpu_s"]),
    (
        "machine",
        "machine busy: during run / 1 s before (% of all cores)",
        lambda r: f"{r['machine_busy_pct']}% / {r.get('machine_busy_before_pct', '?')}% of {r['cores']}",
    ),
    ("window", "measured window (s)", lambda r: r["window_s"]),
]


def print_table(result: dict[str, Any]) -> None:
    width = max(len(label) for _, label, _ in ROWS)
    print(
        f"\nfanout ({result['revision']}): {result['workers']} workers, "
        f"db pool {result['db_pool_max']}/worker, "
        f"selection={result['selection']}, "
        f"deflate={'on' if result['deflate'] else 'off'}, {result['duration']}s"
    )
    for _, label, value in ROWS:
        print(f"  {label:<{width}}  {value(result)}")
    notes = {
        "connect errors": dict(result["connect_errors"]),
        "mutation errors": result["mutation_errors"],
        "unanswered mutations": result["mutations_unanswered"],
        "subscription errors": result["subscription_errors"],
        "closed by server": result["closed_by_server"],
        "foreign events": result["foreign_events"],
        "server log ERROR/Traceback lines": result.get("server_log_problems", 0),
    }
    for label, value in notes.items():
        if value:
            print(f"  ! {label}: {value}")
    for line in result.get("server_log_tail", []):
        print(f"    {line}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subscribers", type=int, default=1000, help="websocket subscribers (default 1000)")
    parser.add_argument("--projects", type=int, default=20, help="projects they are spread over (default 20)")
    parser.add_argument("--rate", type=float, default=20.0, help="updateTask mutations per second, in total")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of driving mutations")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes (default 2)")
    parser.add_argument(
        "--selection",
        choices=sorted(SELECTIONS),
        default="full",
        help="taskEvents selection: full (with actor { id }), no-actor, or lean (default full)",
    )
    parser.add_argument(
        "--deflate", action="store_true", help="permessage-deflate on the server and the clients"
    )
    parser.add_argument(
        "--db-pool-max",
        type=int,
        metavar="N",
        help="server's PostgreSQL pool size per worker (default: Tortoise's, 5)",
    )
    parser.add_argument("--connect-concurrency", type=int, default=50, help="sockets opened at a time")
    parser.add_argument(
        "--connect-timeout", type=float, default=120.0, help="bound on opening all sockets (s)"
    )
    parser.add_argument("--max-inflight", type=int, default=50, help="mutations in flight at most")
    parser.add_argument("--warmup-rounds", type=int, default=10, help="at most (default 10)")
    parser.add_argument("--warmup-timeout", type=float, default=3.0, help="per warm-up round (s)")
    parser.add_argument("--drain-timeout", type=float, default=20.0, help="wait for late events (s)")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
        help="a loopback PostgreSQL to create the scratch database on",
    )
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379"))
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="S",
        help="first wait up to S s for the machine to be < 35%% busy (shared machines)",
    )
    parser.add_argument("--json", action="store_true", help="also print the result as one JSON line")
    parser.add_argument("--keep-server-log", metavar="PATH", help="write the server's output to PATH")
    parser.add_argument("--no-uvloop", action="store_true", help="run the client on asyncio's default loop")
    args = parser.parse_args(argv)
    require_loopback(args.database_url, "--database-url")
    require_loopback(args.redis_url, "--redis-url")
    if args.subscribers < 1 or args.projects < 1 or args.rate <= 0 or args.duration <= 0:
        parser.error("subscribers, projects, rate and duration must be positive")
    if args.duration > 600:
        parser.error("--duration is bounded to 600 s")
    return args


def raise_nofile(needed: int) -> None:
    """Up to the hard limit: a socket per subscriber here, and as many in the server (which
    inherits the limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed + 100:
        status(f"warning: RLIMIT_NOFILE is {soft}; many subscribers may not fit")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    raise_nofile(args.subscribers)
    runner = asyncio.run
    if not args.no_uvloop:
        try:
            import uvloop

            runner = uvloop.run  # type: ignore[assignment]
        except ImportError:
            pass
    result = runner(run(args))
    print_table(result)
    if args.json:
        print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
