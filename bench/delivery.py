"""Side-by-side subscription delivery: pulseboard (1 and 2 workers), a graphql-ws reference server
in Node and a bare Starlette floor, under the same load, in one sitting, in one table.

    .venv/bin/python bench/delivery.py                      # steady: 2000 sockets, 4000 deliveries/s
    .venv/bin/python bench/delivery.py --wide --overload --connect --idle
    .venv/bin/python bench/delivery.py --subs 200 --projects 2 --duration 5   # a quick check

Every server gets N websocket subscribers (one `taskEvents` subscription each, round-robin over P
projects) opened by Node load drivers (bench/reference/driver.mjs, `ws`), and events at a fixed
rate, round-robin over the projects: for pulseboard real `updateTask` mutations over HTTP, for the
others an in-process timer. Each event's task title is `t<ns>`, the sender's monotonic clock just
before it sent the event, and its task version is the per-project sequence the drivers count gaps
and duplicates by. Needs `npm ci --prefix bench/reference`, and for pulseboard PostgreSQL and
Redis on the loopback interface (as bench/fanout.py, whose helpers this reuses). See
bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import random
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from fanout import (  # noqa: E402
    CREATE_PROJECT,
    CREATE_TASK,
    ROOT,
    UPDATE_TASK,
    ProcessWatch,
    TicksOf,
    backend_pids,
    create_database,
    drop_database,
    free_port,
    gql,
    machine_ticks,
    migrate,
    offset_project_ids,
    pids_named,
    process_tree,
    read_server_log,
    require_loopback,
    revision,
    rss_kib,
    server_env,
    setup_gql,
    stop_server,
    with_database,
)

from pulseboard.auth import mint_token  # noqa: E402
from pulseboard.models import Role  # noqa: E402

REFERENCE = BENCH / "reference"
QUERY = (
    "subscription($p: ID!) { taskEvents(projectId: $p) { cursor type occurredAt"
    " task { id title status position priority progress version assignee { id name } }"
    " actor { id name } changes { field from to } } }"
)
TASK_VERSION = "query($id: ID!) { task(id: $id) { version } }"

SERVERS = ("pulseboard-1w", "pulseboard-2w", "node", "floor")
SCENARIOS = ("steady", "wide", "overload", "connect", "idle")
# subs, projects, mutations (events) per second in total, seconds of load, drain bound (s).
PRESETS: dict[str, dict[str, float]] = {
    "steady": {"subs": 2000, "projects": 4, "rate": 8, "duration": 20, "drain": 30},
    "wide": {"subs": 10000, "projects": 100, "rate": 100, "duration": 20, "drain": 60},
    # rate: where the capacity probe starts; duration: the overload itself.
    "overload": {"subs": 2000, "projects": 4, "rate": 8, "duration": 30, "drain": 120},
    # duration: the longest the load runs while the second batch connects.
    "connect": {"subs": 2000, "projects": 4, "rate": 8, "duration": 120, "drain": 30},
    "idle": {"subs": 2000, "projects": 4, "rate": 0, "duration": 0, "drain": 0},
}
PROBE_STEP_S = 4.0  # seconds per capacity-probe step
PROBE_STEPS = 7  # the rate doubles each step: at most 64x the start
SATURATED = 0.85  # a step delivering less than this share of what it offered is saturated

# The drivers' latency histogram (bench/reference/driver.mjs).
HIST_BASE_MS = 0.01
HIST_GROWTH = 1.01


def status(text: str) -> None:
    print(f"[delivery] {text}", file=sys.stderr, flush=True)


def raise_nofile() -> None:
    """RLIMIT_NOFILE to its hard limit, in this process and (as preexec_fn) in every child: a
    socket per subscriber on each side."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def tree_rss_kib(root: int) -> int:
    return sum(rss_kib(p) for p in process_tree(root))


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class LineProcess:
    """A child process spoken to in JSON lines: commands on stdin with an `id`, answers on
    stdout carrying it."""

    def __init__(self, name: str, process: asyncio.subprocess.Process, log: Any) -> None:
        self.name = name
        self.process = process
        self.log = log
        self._next = 0
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._first: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def spawn(cls, name: str, argv: list[str], log: Any, cwd: Path = ROOT) -> LineProcess:
        process = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            limit=64 * 1024 * 1024,
            start_new_session=True,
            preexec_fn=raise_nofile,
            env={k: v for k, v in os.environ.items() if not k.startswith("PULSEBOARD_")},
        )
        return cls(name, process, log)

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while True:
            line = await self.process.stdout.readline()
            if not line:
                break
            message = json.loads(line)
            if not self._first.done():
                self._first.set_result(message)
                continue
            waiter = self._waiting.pop(message.get("id"), None)
            if waiter is not None and not waiter.done():
                waiter.set_result(message)
        error = RuntimeError(f"{self.name} exited ({await self.process.wait()})")
        for waiter in [self._first, *self._waiting.values()]:
            if not waiter.done():
                waiter.set_exception(error)

    async def first(self, within: float) -> dict[str, Any]:
        return await asyncio.wait_for(asyncio.shield(self._first), within)

    async def write(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")
        await self.process.stdin.drain()

    async def call(self, cmd: str, within: float, **body: Any) -> dict[str, Any]:
        self._next += 1
        waiter = asyncio.get_running_loop().create_future()
        self._waiting[self._next] = waiter
        await self.write({"id": self._next, "cmd": cmd, **body})
        answer: dict[str, Any] = await asyncio.wait_for(waiter, within)
        if "error" in answer:
            raise RuntimeError(f"{self.name} {cmd}: {answer['error']}")
        return answer

    async def stop(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(OSError):
                assert self.process.stdin is not None
                self.process.stdin.close()
            try:
                await asyncio.wait_for(self.process.wait(), 5)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.process.wait(), 5)
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader


# ---------------------------------------------------------------------------------------------
# The servers. Each one: start(P), `projects`, `ws_url`, `root_pid`, init(i) (connection_init
# payload of socket i), warm(round), versions(), run(rate, count, stop) and close().


@dataclass
class Driven:
    sent: int  # events sent (for pulseboard: mutations answered without error)
    seconds: float  # from the first send to the last
    high: dict[str, int]  # the last version of each project after the run
    notes: list[str] = field(default_factory=list)


class Pulseboard:
    """`python -m pulseboard serve` on a scratch PostgreSQL database and Redis."""

    def __init__(self, workers: int, args: argparse.Namespace) -> None:
        self.name = f"pulseboard-{workers}w"
        self.workers = workers
        self.args = args
        self.admin_url = args.database_url
        self.db_name = f"bench_{secrets.token_hex(4)}"
        self.database_url = with_database(self.admin_url, self.db_name)
        self.secret = secrets.token_urlsafe(48)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/graphql"
        self.process: subprocess.Popen[bytes] | None = None
        self.http: httpx.AsyncClient | None = None
        self.projects: list[str] = []
        self.tasks: dict[str, str] = {}
        self._tokens: dict[str, str] = {}
        self.log = tempfile.NamedTemporaryFile(prefix="delivery-pulseboard-", suffix=".log", delete=False)  # noqa: SIM115
        self.created = False

    @property
    def root_pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def token(self, who: str) -> str:
        if who not in self._tokens:
            self._tokens[who] = mint_token(
                self.secret,
                sub=who,
                email=f"{who}@example.test",
                name=who,
                role=Role.ADMIN,  # admins see every project
                ttl=dt.timedelta(hours=4),
            )
        return self._tokens[who]

    def auth(self, who: str) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token(who)}"}

    def init(self, index: int) -> dict[str, str]:
        # One user per socket, as browsers would be (the server limits sockets per user).
        return self.auth(f"bench-sub-{index}")

    async def start(self, projects: int) -> None:
        namespace = SimpleNamespace(db_pool_max=None, redis_url=self.args.redis_url, deflate=False)
        env = server_env(namespace, self.database_url, self.secret)  # type: ignore[arg-type]
        env.update(
            PULSEBOARD_WORKERS=str(self.workers),
            PULSEBOARD_LOG_LEVEL="WARNING",
            PULSEBOARD_CONNECTIONS_PER_USER="100",
        )
        await create_database(self.admin_url, self.db_name)
        self.created = True
        await asyncio.to_thread(migrate, env)
        # Project ids (so topics) of their own, apart from any test suite sharing this Redis.
        await offset_project_ids(self.database_url, random.randint(10**8, 2 * 10**9))
        self.process = subprocess.Popen(  # noqa: ASYNC220 (returns at once; the bench waits below)
            [
                sys.executable,
                "-m",
                "pulseboard",
                "serve",
                "--workers",
                str(self.workers),
                "--port",
                str(self.port),
            ],
            env=env,
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: its workers go with it
            preexec_fn=raise_nofile,
        )
        await self._wait_healthy(within=60)
        limits = httpx.Limits(max_connections=50, max_keepalive_connections=50, keepalive_expiry=2)
        self.http = httpx.AsyncClient(base_url=self.url, timeout=30, limits=limits, trust_env=False)
        admin = self.auth("bench-admin")
        for p in range(projects):
            created = await setup_gql(self.http, admin, CREATE_PROJECT, name=f"bench project {p}")
            project = created["createProject"]["id"]
            created = await setup_gql(self.http, admin, CREATE_TASK, projectId=project, title="seed")
            self.projects.append(project)
            self.tasks[project] = created["createTask"]["id"]
        # Each project has its own writer: no user comes near the per-user mutation rate limit.
        await asyncio.gather(*(self.warm_one(p, "seed") for p in self.projects))

    async def _wait_healthy(self, within: float) -> None:
        """Until /healthz answers and every worker process is there."""
        assert self.process is not None
        wanted = 1 if self.workers == 1 else self.workers + 1  # supervisor + workers
        deadline = time.monotonic() + within
        async with httpx.AsyncClient(timeout=1, trust_env=False) as http:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.process.returncode}")
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get(self.url + "/healthz")).status_code == 200 and len(
                        process_tree(self.process.pid)
                    ) >= wanted:
                        answers = 0
                        for _ in range(4 * self.workers):
                            with contextlib.suppress(httpx.TransportError):
                                answers += (await http.get(self.url + "/healthz")).status_code == 200
                        if answers == 4 * self.workers:
                            return
                await asyncio.sleep(0.2)
        raise RuntimeError(f"{self.name} did not become healthy in {within:.0f} s")

    def writer(self, project: str) -> dict[str, str]:
        return self.auth(f"bench-writer-{project}")

    async def warm_one(self, project: str, title: str) -> int:
        assert self.http is not None
        data = await setup_gql(
            self.http, self.writer(project), UPDATE_TASK, id=self.tasks[project], title=title
        )
        return int(data["updateTask"]["version"])

    async def warm(self, round_: int) -> None:
        await asyncio.gather(*(self.warm_one(p, f"w{round_}") for p in self.projects))

    async def versions(self) -> dict[str, int]:
        assert self.http is not None
        admin = self.auth("bench-admin")
        gate = asyncio.Semaphore(10)

        async def one(project: str) -> tuple[str, int]:
            async with gate:
                data = await setup_gql(self.http, admin, TASK_VERSION, id=self.tasks[project])  # type: ignore[arg-type]
                return project, int(data["task"]["version"])

        return dict(await asyncio.gather(*(one(p) for p in self.projects)))

    async def run(self, rate: float, count: int, stop: asyncio.Event) -> Driven:
        """updateTask at `rate` per second in total, round-robin over the projects, open loop:
        send i is due at start + i / rate and never waits for the answers of earlier ones; one
        that would exceed --max-inflight mutations in flight is skipped and counted."""
        assert self.http is not None
        http = self.http
        gate = asyncio.Semaphore(self.args.max_inflight)
        ok = skipped = 0
        failed: Counter[str] = Counter()
        max_late = 0.0

        async def send(i: int) -> None:
            nonlocal ok
            project = self.projects[i % len(self.projects)]
            try:
                title = f"t{time.monotonic_ns()}"
                await gql(http, self.writer(project), UPDATE_TASK, id=self.tasks[project], title=title)
                ok += 1
            except Exception as error:  # counted and reported
                failed[f"{type(error).__name__}: {error}"[:120]] += 1
            finally:
                gate.release()

        sends: list[asyncio.Task[None]] = []
        started = time.monotonic()
        for i in range(count):
            if stop.is_set():
                break
            delay = started + i / rate - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                if stop.is_set():
                    break
            else:
                max_late = max(max_late, -delay)
            if gate.locked():
                skipped += 1
                continue
            await gate.acquire()
            sends.append(asyncio.create_task(send(i)))
        seconds = time.monotonic() - started
        pending: set[asyncio.Task[None]] = set()
        if sends:
            _, pending = await asyncio.wait(sends, timeout=30)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        notes = []
        if skipped:
            notes.append(f"{skipped} mutations skipped (>{self.args.max_inflight} in flight)")
        if failed:
            notes.append(f"{sum(failed.values())} mutations failed: {failed.most_common(1)[0][0]}")
        if pending:
            notes.append(f"{len(pending)} mutations unanswered after 30 s")
        if max_late > 0.1:
            notes.append(f"mutation sender up to {max_late * 1000:.0f} ms late")
        return Driven(sent=ok, seconds=seconds, high=await self.versions(), notes=notes)

    async def close(self) -> list[str]:
        if self.http is not None:
            await self.http.aclose()
        if self.process is not None:
            await asyncio.to_thread(stop_server, self.process)
        self.log.close()
        problems = await asyncio.to_thread(read_server_log, self.log.name, None)
        if self.created:
            await drop_database(self.admin_url, self.db_name)
        return problems


class TimerServer:
    """bench/reference/server.mjs (Node) or bench/floor.py (Python): events from its own timer,
    driven over stdin."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.port = free_port()
        self.ws_url = f"ws://127.0.0.1:{self.port}/graphql"
        self.projects: list[str] = []
        self.child: LineProcess | None = None
        self.log = tempfile.NamedTemporaryFile(prefix=f"delivery-{name}-", suffix=".log", delete=False)  # noqa: SIM115

    @property
    def root_pid(self) -> int:
        assert self.child is not None
        return self.child.process.pid

    def init(self, index: int) -> dict[str, str]:
        return {"authorization": f"Bearer bench-sub-{index}"}  # accepted, never checked

    async def start(self, projects: int) -> None:
        # Ids as long as pulseboard's, whose project ids start at a random 9- or 10-digit number.
        self.projects = [str(10**9 + p) for p in range(projects)]
        ids = ",".join(self.projects)
        if self.name == "node":
            argv = [node_binary(), str(REFERENCE / "server.mjs"), "--port", str(self.port), "--projects", ids]
        else:
            argv = [sys.executable, str(BENCH / "floor.py"), "--port", str(self.port), "--projects", ids]
        self.child = await LineProcess.spawn(self.name, argv, self.log)
        await self.child.first(within=30)
        deadline = time.monotonic() + 30
        while not port_open(self.port):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} does not listen on {self.port}")
            await asyncio.sleep(0.1)

    async def warm(self, round_: int) -> None:
        assert self.child is not None
        await self.child.call("warm", 30, round=round_)

    async def versions(self) -> dict[str, int]:
        assert self.child is not None
        return {k: int(v) for k, v in (await self.child.call("versions", 30))["versions"].items()}

    async def run(self, rate: float, count: int, stop: asyncio.Event) -> Driven:
        assert self.child is not None
        child = self.child
        bound = count / rate + 120
        running = asyncio.create_task(child.call("run", bound, rate=rate, count=count))
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if stopping.done() and not running.done():
            await child.call("stop", 30)
        stopping.cancel()
        answer = await running
        notes = []
        if answer.get("maxLateMs", 0) > 100:
            notes.append(f"timer up to {answer['maxLateMs']:.0f} ms late")
        versions = {k: int(v) for k, v in answer["versions"].items()}
        return Driven(sent=int(answer["sent"]), seconds=float(answer["seconds"]), high=versions, notes=notes)

    async def close(self) -> list[str]:
        if self.child is not None:
            await self.child.stop()
        self.log.close()
        return (await asyncio.to_thread(read_and_remove, self.log.name))[:20]


def read_and_remove(path: str) -> list[str]:
    """The non-blank lines of a child's log, which is removed."""
    text = Path(path).read_text(errors="replace")
    Path(path).unlink(missing_ok=True)
    return [line for line in text.splitlines() if line.strip()]


def node_binary() -> str:
    node = shutil.which("node")
    if node is None:
        sys.exit("delivery: node (20+) is not on PATH")
    return node


def make_server(name: str, args: argparse.Namespace) -> Pulseboard | TimerServer:
    if name == "pulseboard-1w":
        return Pulseboard(1, args)
    if name == "pulseboard-2w":
        return Pulseboard(2, args)
    return TimerServer(name)


# ---------------------------------------------------------------------------------------------
# The load drivers


class Drivers:
    """D driver processes; socket i belongs to driver i % D."""

    def __init__(self, children: list[LineProcess]) -> None:
        self.children = children

    @classmethod
    async def start(
        cls, count: int, ws_url: str, sockets: list[dict[str, Any]], args: argparse.Namespace, log: Any
    ) -> Drivers:
        children = []
        for d in range(count):
            child = await LineProcess.spawn(
                f"driver {d}", [node_binary(), str(REFERENCE / "driver.mjs")], log
            )
            children.append(child)
            await child.write(
                {
                    "url": ws_url,
                    "query": QUERY,
                    "sockets": sockets[d::count],
                    "concurrency": max(1, args.connect_concurrency // count),
                    "openTimeoutMs": 30000,
                }
            )
        for child in children:
            await child.first(within=60)
        return cls(children)

    async def all(self, cmd: str, within: float, **body: Any) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(c.call(cmd, within, **body) for c in self.children)))

    async def connect(self, first: int, last: int, within: float) -> dict[str, Any]:
        answers = await self.all("connect", within, **{"from": first, "to": last})
        errors: Counter[str] = Counter()
        for answer in answers:
            errors.update(answer["errors"])
        return {
            "ok": sum(a["ok"] for a in answers),
            "failed": sum(a["failed"] for a in answers),
            "errors": errors,
            "seconds": (max(a["end"] for a in answers) - min(a["start"] for a in answers)) / 1e9,
            "start": min(a["start"] for a in answers),
        }

    async def warm(self, round_: int) -> tuple[int, int]:
        answers = await self.all("warm", 30, round=round_)
        return sum(a["warm"] for a in answers), sum(a["open"] for a in answers)

    async def measure(self, low: dict[str, int], t0: int) -> None:
        await self.all("measure", 30, low=low, t0=t0)

    async def progress(self, high: dict[str, int], first: int, last: int) -> tuple[int, int]:
        answers = await self.all("progress", 30, high=high, **{"from": first, "to": last})
        return sum(a["done"] for a in answers), sum(a["open"] for a in answers)

    async def live(self, first: int, last: int) -> tuple[int, int, int]:
        answers = await self.all("live", 30, **{"from": first, "to": last})
        return (
            sum(a["live"] for a in answers),
            sum(a["open"] for a in answers),
            max(a["last"] for a in answers),
        )

    async def report(self, high: dict[str, int], first: int, last: int) -> dict[str, Any]:
        answers = await self.all("report", 60, high=high, **{"from": first, "to": last})
        merged: dict[str, Any] = {}
        for key in ("sockets", "open", "expected", "delivered", "gaps", "undelivered", "duplicates",
                    "outOfOrder", "stale", "beyond", "errors", "gapFree", "latencyCount", "within1s",
                    "frames", "frameBytes", "measuredBytes", "measuredFrames"):  # fmt: skip
            merged[key] = sum(a[key] for a in answers)
        buckets: Counter[int] = Counter()
        for answer in answers:
            for k, n in answer["buckets"]:
                buckets[int(k)] += n
        merged["buckets"] = buckets
        width = max((len(a["perSecond"]) for a in answers), default=0)
        merged["perSecond"] = [
            sum(a["perSecond"][s] for a in answers if s < len(a["perSecond"])) for s in range(width)
        ]
        merged["lastReceive"] = max(a["lastReceive"] for a in answers)
        merged["latencyMaxMs"] = max(a["latencyMaxMs"] for a in answers)
        merged["lastErrors"] = Counter()
        merged["closed"] = Counter()
        for answer in answers:
            merged["lastErrors"].update(answer["lastErrors"])
            merged["closed"].update(answer["closed"])
        merged["sample"] = next((a["sample"] for a in answers if a["sample"]), None)
        merged["driverCpuPct"] = [100 * a["cpuSeconds"] / max(1e-9, a["wallSeconds"]) for a in answers]
        merged["driverLagP99Ms"] = max(a["loopDelayP99Ms"] for a in answers)
        merged["driverLagMaxMs"] = max(a["loopDelayMaxMs"] for a in answers)
        return merged

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.all("close", 30)
        for child in self.children:
            await child.stop()


def percentile_ms(buckets: Counter[int], p: float) -> float:
    """The p-th percentile of the merged histogram (geometric middle of its bucket, ±0.5 %)."""
    total = sum(buckets.values())
    if not total:
        return float("nan")
    rank = p / 100 * total
    seen = 0.0
    for k in sorted(buckets):
        seen += buckets[k]
        if seen >= rank:
            return float(HIST_BASE_MS * HIST_GROWTH ** (k + 0.5))
    return float(HIST_BASE_MS * HIST_GROWTH ** (max(buckets) + 0.5))


# ---------------------------------------------------------------------------------------------
# One server under one scenario


@dataclass
class Window:
    """What one measured load window gave."""

    rate: float
    driven: Driven
    report: dict[str, Any]
    t0: int
    cpu_s: float
    peak_rss_kib: int
    window_s: float
    drain_s: float
    drained: bool
    busy_pct: float

    @property
    def sending_s(self) -> float:
        """How long the events were sent for (a timer that fell behind sent for longer)."""
        return max(self.driven.seconds, self.driven.sent / self.rate)

    @property
    def delivered_per_s(self) -> float:
        """Over the sending time, or until the last delivery if that came later."""
        span = max(self.sending_s, (self.report["lastReceive"] - self.t0) / 1e9)
        return self.report["delivered"] / span if span > 0 else 0.0

    @property
    def offered_per_s(self) -> float:
        """Deliveries asked for per second of sending (a timer that fell behind sent longer)."""
        return float(self.report["expected"]) / max(1e-9, self.sending_s)


class Case:
    def __init__(
        self, scenario: str, server_name: str, load: dict[str, float], args: argparse.Namespace
    ) -> None:
        self.scenario = scenario
        self.server_name = server_name
        self.subs = int(load["subs"])
        self.projects = int(load["projects"])
        self.rate = float(load["rate"])
        self.duration = float(load["duration"])
        self.drain = float(load["drain"])
        self.args = args
        self.row: dict[str, Any] = {"scenario": scenario, "server": server_name, "subs": self.subs,
                                    "projects": self.projects, "notes": []}  # fmt: skip
        self.server: Pulseboard | TimerServer | None = None
        self.drivers: Drivers | None = None

    def note(self, text: str) -> None:
        self.row["notes"].append(text)

    async def run(self) -> dict[str, Any]:
        log = tempfile.NamedTemporaryFile(prefix="delivery-drivers-", suffix=".log", delete=False)  # noqa: SIM115
        try:
            await self._run(log)
        except Exception as error:  # reported in the table, the other cases go on
            self.row["failed"] = f"{type(error).__name__}: {error}"[:200]
            status(f"{self.scenario}/{self.server_name} failed: {self.row['failed']}")
        finally:
            if self.drivers is not None:
                await self.drivers.close()
            if self.server is not None:
                problems = await self.server.close()
                if problems:
                    self.note(f"server log: {len(problems)} problem line(s), first: {problems[0][:120]}")
            log.close()
            lines = await asyncio.to_thread(read_and_remove, log.name)
            if lines:
                self.note(f"driver stderr: {lines[0][:120]}")
        return self.row

    async def _run(self, log: Any) -> None:
        server = self.server = make_server(self.server_name, self.args)
        status(f"{self.scenario}/{self.server_name}: starting")
        await server.start(self.projects)
        batches = 2 if self.scenario == "connect" else 1
        sockets = [
            {"index": i, "project": server.projects[i % self.projects], "init": server.init(i)}
            for i in range(self.subs * batches)
        ]
        self.drivers = await Drivers.start(self.args.drivers, server.ws_url, sockets, self.args, log)
        await asyncio.sleep(1)
        rss_before = tree_rss_kib(server.root_pid)

        # Connect and subscribe N sockets on an idle server.
        connect_bound = 60 + self.subs * 0.05
        watch = ProcessWatch(server.root_pid)
        watch.start()
        connected = await self.drivers.connect(0, self.subs, within=connect_bound)
        connect_cpu_s = await watch.stop()
        self.row["connected"] = connected["ok"]
        self.row["connect_s"] = connected["seconds"]
        self.row["connect_cpu_ms"] = 1000 * connect_cpu_s / max(1, connected["ok"])
        self.note(f"connect: server CPU {self.row['connect_cpu_ms']:.2f} ms per socket")
        if connected["failed"]:
            self.note(
                f"{connected['failed']} sockets failed to connect: {connected['errors'].most_common(1)[0]}"
            )
        status(
            f"{self.scenario}/{self.server_name}: {connected['ok']} connected in {connected['seconds']:.1f} s"
        )
        await self.warm_up()
        await asyncio.sleep(2)  # the warm-up's deliveries done; idle
        rss_idle = tree_rss_kib(server.root_pid)
        self.row["rss_before_mib"] = rss_before / 1024
        self.row["rss_idle_mib"] = rss_idle / 1024
        self.row["kib_per_idle_sub"] = (rss_idle - rss_before) / max(1, connected["ok"])

        if self.scenario == "idle":
            return
        if self.scenario == "overload":
            await self.overload()
            return
        if self.scenario == "connect":
            await self.connect_under_load()
            return
        window = await self.measure(self.rate, self.duration, self.drain)
        self.fill(window)
        if self.scenario == "wide":
            report = window.report
            self.row["within_1s_pct"] = 100 * report["within1s"] / max(1, report["expected"])
            self.row["gap_free_pct"] = 100 * report["gapFree"] / max(1, report["sockets"])

    async def warm_up(self) -> None:
        """One event per project per round until every open socket has received one of the
        round (graphql-transport-ws does not acknowledge a subscribe, so this is how the bench
        knows every subscription is live). At most --warmup-rounds rounds."""
        assert self.server is not None and self.drivers is not None
        per_round = max(3.0, self.subs / 500)
        started = time.monotonic()
        for round_ in range(self.args.warmup_rounds):
            await self.server.warm(round_)
            deadline = time.monotonic() + per_round
            while time.monotonic() < deadline:
                warm, open_ = await self.drivers.warm(round_)
                if warm >= open_:
                    self.row["warmup_s"] = time.monotonic() - started
                    return
                await asyncio.sleep(0.1)
        warm, open_ = await self.drivers.warm(self.args.warmup_rounds - 1)
        self.note(
            f"{open_ - warm} of {open_} sockets not live after {self.args.warmup_rounds} warm-up rounds"
        )

    async def measure(
        self,
        rate: float,
        duration: float,
        drain: float,
        during: Any = None,
        first: int = 0,
        last: int | None = None,
    ) -> Window:
        """Load at `rate` events/s for `duration` s (or until `during()` has returned), then
        until every open socket has its project's last event (at most `drain` s)."""
        assert self.server is not None and self.drivers is not None
        server, drivers = self.server, self.drivers
        last = self.subs if last is None else last
        low = await server.versions()
        postgres = redis = None
        if isinstance(server, Pulseboard):
            postgres = TicksOf(await backend_pids(server.admin_url, server.db_name))
            redis = TicksOf(pids_named("redis-server"))
        watch = ProcessWatch(server.root_pid)
        busy_0, total_0 = machine_ticks()
        t0 = time.monotonic_ns()
        await drivers.measure(low, t0)
        watch.start()
        stop = asyncio.Event()
        count = max(1, int(rate * duration))
        load = asyncio.create_task(server.run(rate, count, stop))
        if during is not None:
            try:
                await during()
            finally:
                stop.set()
        driven = await load
        drain_start = time.monotonic()
        drained = False
        while time.monotonic() - drain_start < drain:
            done, open_ = await drivers.progress(driven.high, first, last)
            if done >= open_:
                drained = True
                break
            await asyncio.sleep(0.25)
        drain_s = time.monotonic() - drain_start
        cpu_s = await watch.stop()
        busy_1, total_1 = machine_ticks()
        window_s = (time.monotonic_ns() - t0) / 1e9
        if isinstance(server, Pulseboard) and postgres is not None and redis is not None:
            pg_s = postgres.seconds(await backend_pids(server.admin_url, server.db_name))
            redis_s = redis.seconds(pids_named("redis-server"))
            driven.notes.append(f"PostgreSQL backends {pg_s:.1f} s CPU, redis-server {redis_s:.1f} s")
        report = await drivers.report(driven.high, first, last)
        return Window(
            rate=rate,
            driven=driven,
            report=report,
            t0=t0,
            cpu_s=cpu_s,
            peak_rss_kib=watch.peak_rss_kib,
            window_s=window_s,
            drain_s=drain_s,
            drained=drained,
            busy_pct=100 * (busy_1 - busy_0) / max(1, total_1 - total_0),
        )

    def fill(self, window: Window) -> None:
        """The table's figures from one window (offered over the time the load was sent)."""
        report = window.report
        self.row.update(
            offered_per_s=window.offered_per_s,
            target_per_s=window.rate * self.subs / self.projects,
            delivered_per_s=window.delivered_per_s,
            expected=report["expected"],
            delivered=report["delivered"],
            p50_ms=percentile_ms(report["buckets"], 50),
            p95_ms=percentile_ms(report["buckets"], 95),
            p99_ms=percentile_ms(report["buckets"], 99),
            max_ms=report["latencyMaxMs"],
            gaps=report["gaps"],
            duplicates=report["duplicates"],
            undelivered=report["undelivered"],
            out_of_order=report["outOfOrder"],
            cpu_ms_per_delivery=1000 * window.cpu_s / max(1, report["delivered"]),
            cpu_pct=100 * window.cpu_s / max(1e-9, window.window_s),
            rss_peak_mib=window.peak_rss_kib / 1024,
            frame_bytes=report["measuredBytes"] / max(1, report["measuredFrames"]),
            driver_cpu_pct=max(report["driverCpuPct"]),
            driver_lag_p99_ms=report["driverLagP99Ms"],
            busy_pct=window.busy_pct,
            drain_s=window.drain_s,
            sample=report["sample"],
        )
        target = self.row["target_per_s"]
        if self.row["offered_per_s"] < 0.98 * target:
            self.note(f"target was {target:,.0f}/s")
        for text in window.driven.notes:
            self.note(text)
        if not window.drained:
            self.note(f"not drained after {window.drain_s:.0f} s")
        if report["closed"]:
            self.note(f"closed by the server: {dict(report['closed'].most_common(2))}")
        if report["errors"]:
            self.note(f"{report['errors']} error messages: {report['lastErrors'].most_common(1)[0][0][:100]}")
        if report["beyond"]:
            self.note(f"{report['beyond']} events above the final version")

    async def overload(self) -> None:
        """Capacity probe (the rate doubles every PROBE_STEP_S s from the scenario's rate until
        a step delivers less than SATURATED of what it offered), then 3x that capacity."""
        per_project = self.subs / self.projects
        rate = self.rate
        capacity = 0.0
        saturated = False
        steps = []
        for _ in range(PROBE_STEPS):
            window = await self.measure(rate, PROBE_STEP_S, drain=60)
            per_second = window.report["perSecond"][1 : int(PROBE_STEP_S)]
            delivered = statistics.median(per_second) if per_second else 0.0
            offered = rate * per_project
            steps.append(f"{offered:.0f}->{delivered:.0f}")
            capacity = max(capacity, delivered)
            status(f"overload/{self.server_name}: probe offered {offered:.0f}/s, delivered {delivered:.0f}/s")
            if delivered < SATURATED * offered:
                saturated = True
                break
            rate *= 2
        self.row["capacity_per_s"] = capacity
        self.note(
            "probe "
            + ", ".join(steps)
            + ("" if saturated else " (never saturated: capacity is a lower bound)")
        )
        overload_rate = 3 * capacity / per_project
        window = await self.measure(overload_rate, self.duration, self.drain)
        self.fill(window)
        seconds = window.report["perSecond"][1 : int(self.duration)]
        if seconds:
            self.row["per_second_min"] = min(seconds)
            self.row["per_second_median"] = statistics.median(seconds)
            status(f"{self.scenario}/{self.server_name}: delivered each second {[round(n) for n in seconds]}")
        self.row["rss_after_mib"] = tree_rss_kib(self.server.root_pid) / 1024 if self.server else 0

    async def connect_under_load(self) -> None:
        """The scenario's load on the first N sockets while N more connect and subscribe."""
        assert self.drivers is not None
        drivers = self.drivers
        result: dict[str, Any] = {}

        async def during() -> None:
            await asyncio.sleep(2)
            connected = await drivers.connect(self.subs, 2 * self.subs, within=60 + self.subs * 0.05)
            result.update(connected)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                live, open_, last = await drivers.live(self.subs, 2 * self.subs)
                if live >= open_:
                    result["live_s"] = (last - connected["start"]) / 1e9
                    return
                await asyncio.sleep(0.1)
            result["not_live"] = open_ - live

        window = await self.measure(
            self.rate, self.duration, self.drain, during=during, first=0, last=self.subs
        )
        self.fill(window)
        self.row["connect_load_s"] = result.get("seconds")
        self.row["live_load_s"] = result.get("live_s")
        if result.get("failed"):
            self.note(f"under load: {result['failed']} sockets failed: {result['errors'].most_common(1)[0]}")
        if result.get("not_live"):
            self.note(f"under load: {result['not_live']} new sockets got no event within 60 s")


# ---------------------------------------------------------------------------------------------
# Output


def fmt(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def latency(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def extras(row: dict[str, Any]) -> list[str]:
    out = []
    if "within_1s_pct" in row:
        out.append(f"within 1 s {row['within_1s_pct']:.1f} %, gap-free sockets {row['gap_free_pct']:.1f} %")
    if "capacity_per_s" in row:
        out.append(
            f"capacity {fmt(row['capacity_per_s'])}/s, offered 3x; delivered/s each second min"
            f" {fmt(row.get('per_second_min'))} median {fmt(row.get('per_second_median'))};"
            f" drain {fmt(row.get('drain_s'), 1)} s; RSS after {fmt(row.get('rss_after_mib'))} MiB"
        )
    if "connect_load_s" in row:
        out.append(
            f"{row['subs']} more sockets under load: connect+subscribe {fmt(row['connect_load_s'], 1)} s,"
            f" all live {fmt(row.get('live_load_s'), 1)} s"
        )
    if "frame_bytes" in row:
        out.append(f"frame {row['frame_bytes']:.0f} B")
    return out


def print_table(rows: list[dict[str, Any]], machine: dict[str, Any]) -> None:
    header = [
        "scenario", "server", "subs / projects", "offered /s", "delivered /s", "p50 ms", "p95 ms",
        "p99 ms", "gaps / dups (undelivered)", "server CPU ms / delivery (% core)",
        "RSS idle / peak MiB", "KiB / idle sub", "connect s", "driver CPU % / lag p99 ms",
        "machine busy %", "notes",
    ]  # fmt: skip
    print()
    print(
        f"Subscription delivery, {machine['revision']}, one run of each row in one sitting"
        f" ({machine['started']}); figures come from this single run."
    )
    print()
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        if "failed" in row:
            cells = [row["scenario"], row["server"], f"{row['subs']} / {row['projects']}"]
            cells += ["-"] * (len(header) - 4) + [f"FAILED: {row['failed']}; " + "; ".join(row["notes"])]
            print("| " + " | ".join(cells) + " |")
            continue
        measured = "delivered_per_s" in row
        cells = [
            row["scenario"],
            row["server"],
            f"{fmt(row['subs'])} / {row['projects']}",
            fmt(row.get("offered_per_s")) if measured else "-",
            fmt(row.get("delivered_per_s")) if measured else "-",
            latency(row.get("p50_ms")) if measured else "-",
            latency(row.get("p95_ms")) if measured else "-",
            latency(row.get("p99_ms")) if measured else "-",
            f"{fmt(row['gaps'])} / {fmt(row['duplicates'])} ({fmt(row['undelivered'])})" if measured else "-",
            f"{row['cpu_ms_per_delivery']:.3f} ({row['cpu_pct']:.0f} %)" if measured else "-",
            f"{fmt(row.get('rss_idle_mib'))} / {fmt(row.get('rss_peak_mib'))}",
            fmt(row.get("kib_per_idle_sub"), 1),
            f"{fmt(row.get('connect_s'), 1)}"
            + ("" if row.get("connected") == row["subs"] else f" ({row.get('connected')} ok)"),
            f"{row['driver_cpu_pct']:.0f} / {row['driver_lag_p99_ms']:.0f}" if measured else "-",
            fmt(row.get("busy_pct")) if measured else "-",
            "; ".join(extras(row) + row["notes"]),
        ]
        print("| " + " | ".join(str(c) for c in cells) + " |")
    print()
    print(
        f"Machine: {machine['nproc']} CPUs (nproc), load average {machine['load_before']} before"
        f" and {machine['load_after']} after; server, drivers ({machine['drivers']} Node processes),"
        " PostgreSQL and Redis share these cores."
    )
    print(
        "offered/s: deliveries the sent events asked for (events x subscribers of their project) per"
        " second of sending; delivered/s: distinct events received ÷ the longer of the sending time"
        " and (last receive - load start);"
        " latency: receive - send timestamp in the title; CPU: user+sys of the server's process"
        " tree over load + drain; RSS: Σ VmRSS of that tree."
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for name in SCENARIOS:
        preset = PRESETS[name]
        parser.add_argument(
            f"--{name}",
            action="store_true",
            help=f"run {name} ({int(preset['subs'])} subs, {int(preset['projects'])} projects"
            + (f", rate {preset['rate']:g}/s, {preset['duration']:g} s)" if preset["rate"] else ")"),
        )
    parser.add_argument("--all", action="store_true", help="every scenario")
    parser.add_argument(
        "--servers",
        default=",".join(SERVERS),
        help=f"comma-separated, in order (default {','.join(SERVERS)})",
    )
    parser.add_argument("--subs", type=int, help="override the scenarios' subscriber count")
    parser.add_argument("--projects", type=int, help="override the scenarios' project count")
    parser.add_argument("--rate", type=float, help="override the events (mutations) per second, in total")
    parser.add_argument("--duration", type=float, help="override the seconds of load")
    parser.add_argument("--drain", type=float, help="override the bound on waiting for late events (s)")
    parser.add_argument("--drivers", type=int, default=2, help="Node driver processes (default 2)")
    parser.add_argument(
        "--connect-concurrency", type=int, default=100, help="handshakes in flight, all drivers"
    )
    parser.add_argument("--max-inflight", type=int, default=50, help="pulseboard mutations in flight at most")
    parser.add_argument("--warmup-rounds", type=int, default=6)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
        help="a loopback PostgreSQL to create the scratch databases on",
    )
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379"))
    parser.add_argument("--json", action="store_true", help="also print every row as a JSON line")
    args = parser.parse_args(argv)
    require_loopback(args.database_url, "--database-url")
    require_loopback(args.redis_url, "--redis-url")
    args.scenarios = [s for s in SCENARIOS if args.all or getattr(args, s)] or ["steady"]
    args.server_list = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = set(args.server_list) - set(SERVERS)
    if unknown:
        parser.error(f"unknown servers {sorted(unknown)}; choose from {', '.join(SERVERS)}")
    for name, bound in (
        ("subs", 20000),
        ("projects", 1000),
        ("duration", 600),
        ("drain", 600),
        ("rate", 10000),
    ):
        value = getattr(args, name)
        if value is not None and not 0 < value <= bound:
            parser.error(f"--{name} must be in (0, {bound}]")
    if not 1 <= args.drivers <= 8:
        parser.error("--drivers must be 1..8")
    return args


def load_of(scenario: str, args: argparse.Namespace) -> dict[str, float]:
    load = dict(PRESETS[scenario])
    for name in ("subs", "projects", "rate", "duration", "drain"):
        value = getattr(args, name)
        skip = (scenario == "idle" and name in ("rate", "duration", "drain")) or (
            scenario == "connect" and name == "duration"  # a bound there: until the new sockets are live
        )
        if value is not None and not skip:
            load[name] = value
    return load


async def main_async(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    machine = {
        "nproc": os.cpu_count(),
        "load_before": " / ".join(f"{x:.2f}" for x in os.getloadavg()),
        "revision": revision(),
        "started": dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "drivers": args.drivers,
    }
    rows = []
    for scenario in args.scenarios:
        load = load_of(scenario, args)
        for name in args.server_list:
            rows.append(await Case(scenario, name, load, args).run())
            await asyncio.sleep(2)  # let the last one's sockets and processes go
    machine["load_after"] = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    return rows, machine


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not (REFERENCE / "node_modules" / "graphql-ws" / "package.json").is_file():
        sys.exit("delivery: run `npm ci --prefix bench/reference` first")
    raise_nofile()
    runner = asyncio.run
    with contextlib.suppress(ImportError):
        import uvloop

        runner = uvloop.run
    rows, machine = runner(main_async(args))
    print_table(rows, machine)
    if args.json:
        for row in rows:
            print(json.dumps({**row, "machine": machine}, default=str))


if __name__ == "__main__":
    main()
