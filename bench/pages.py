"""The request path beside PostGraphile 4: one board page (and one ticket page) over HTTP, the
same load on both servers, in one sitting, in one table.

    npm ci --prefix bench/postgraphile                  # once: postgraphile 4.14.1, autocannon 8
    .venv/bin/python bench/pages.py                      # every row, 3-4 minutes
    .venv/bin/python bench/pages.py --pages tasks --servers pulseboard-1w,postgraphile --duration 5

Method. A scratch database `pulseboard_bench_http_<random>` on the loopback PostgreSQL gets
pulseboard's migrations (`python -m pulseboard migrate`), then data made through pulseboard's own
mutations over HTTP: one project with 5 members and 60 tasks (4 columns, 4 priorities, every task
assigned to a member), one team with 3 agents, its queue with 60 tickets (filed by the members in
turn, each assigned to an agent). Then, one server at a time on that database:

- `pulseboard-1w`: `python -m pulseboard serve --workers 1` (PULSEBOARD_ENV=production, Redis
  broadcast, overload shedding off with PULSEBOARD_OVERLOAD_LAG_MS=0, the per-user mutation rate
  limit lifted), with an ADMIN token minted by `pulseboard.auth.mint_token` (`--viewer member`:
  a project member's token for the board, a queue agent's for the tickets);
- `postgraphile`: the PostGraphile 4 CLI over the same `public` schema (NODE_ENV=production,
  no GraphiQL, no watch, no query log, the default pool of 10, as pulseboard's);
- `pulseboard-2w`: as the first, `--workers 2`.

Each page is checked first: both servers must answer the same totalCount and the same 50 rows in
the same order (one `sanity:` line). Then autocannon (bench/postgraphile/load.js, the same for
every server) POSTs the page's JSON body over `--connections` (10) keep-alive connections as fast
as the server answers: `--warmup` (3) s not reported, then `--duration` (15) s measured. Only 2xx
answers with `data` and without `errors` count; the others are in the notes. The `update` row is
`updateTask(id, input: {title})` without expectedVersion at a fixed `--rate` (100/s) over the 60
tasks in turn, on pulseboard-1w:
an open loop in the same load.js (request i is sent at start + i / rate, whatever the earlier ones
are doing, over `--connections` keep-alive sockets; latency from the time it was due), since
autocannon's own fixed rate sends each connection's share of a second back to back and fills its
histogram with made-up values when it corrects for coordinated omission.

CPU per request is user + system of the server's whole process tree (`/proc/<pid>/stat`; for two
workers: the supervisor, the resource tracker and the workers) over the measured window ÷ the
requests answered; the PostgreSQL backends of the scratch database are counted apart, since
PostGraphile hands more of the work (the JSON) to PostgreSQL. Everything, load tool included,
shares the machine: `others % core` is the machine's busy time over the window less the server's,
its backends' and autocannon's, i.e. what the machine's other users took (`--wait-idle S` first
waits up to S s per row for a calm machine). Each server starts from the work tree as it is then:
a row whose pulseboard code differs from the header's says so. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from fanout import (  # noqa: E402
    CLK_TCK,
    ROOT,
    backend_pids,
    cpu_ticks,
    create_database,
    drop_database,
    free_port,
    gql,
    machine_ticks,
    migrate,
    process_tree,
    read_server_log,
    require_loopback,
    revision,
    server_env,
    setup_gql,
    stop_server,
    wait_idle,
    with_database,
)

from pulseboard.auth import mint_token  # noqa: E402
from pulseboard.models import Role, TaskStatus  # noqa: E402

NODE_DIR = BENCH / "postgraphile"
SERVERS = ("pulseboard-1w", "postgraphile", "pulseboard-2w")
PAGES = ("tasks", "tickets", "update")
TASKS, TICKETS, MEMBERS, AGENTS = 60, 60, 5, 3

TASKS_PB = (
    "query($p: ID!) { tasks(projectId: $p, first: 50) { totalCount"
    " edges { node { id title status position priority assignee { id name } } } } }"
)
# pulseboard's board order (resolvers/tasks.py BOARD_ORDER): status, position, id.
TASKS_PG = (
    "query($p: Int!) { allTasks(condition: {projectId: $p}, first: 50,"
    " orderBy: [STATUS_ASC, POSITION_ASC, ID_ASC]) { totalCount"
    " nodes { id title status position priority userByAssigneeId { id name } } } }"
)
TICKET_SCALARS = "id title description status priority createdAt updatedAt firstResponseAt resolvedAt version"
TICKETS_PB = (
    "query($q: ID!) { tickets(queueId: $q, first: 50) { totalCount edges { node {"
    f" {TICKET_SCALARS} requester {{ id name }} assignee {{ id name }} }} }} }} }}"
)
# pulseboard lists tickets newest first (resolvers/tickets.py: order ["-id"]).
TICKETS_PG = (
    "query($q: Int!) { allTickets(condition: {queueId: $q}, first: 50, orderBy: [ID_DESC]) {"
    f" totalCount nodes {{ {TICKET_SCALARS} userByRequesterId {{ id name }}"
    " userByAssigneeId { id name } } } }"
)
UPDATE_TASK = "mutation($id: ID!, $t: String!) { updateTask(id: $id, input: {title: $t}) { id version } }"

VIEWER = "{ viewer { id } }"
CREATE_PROJECT = "mutation($n: String!) { createProject(input: {name: $n}) { id } }"
ADD_MEMBER = "mutation($p: ID!, $u: ID!) { addProjectMember(projectId: $p, userId: $u) { id } }"
CREATE_TASK = (
    "mutation($p: ID!, $t: String!, $s: TaskStatus!, $pr: TaskPriority!, $a: ID!) { createTask(input:"
    " {projectId: $p, title: $t, status: $s, priority: $pr, assigneeId: $a}) { id } }"
)
CREATE_TEAM = "mutation($n: String!) { createTeam(input: {name: $n}) { id } }"
ADD_AGENT = "mutation($t: ID!, $u: ID!) { addTeamMember(teamId: $t, userId: $u) { id } }"
CREATE_QUEUE = (
    'mutation($t: ID!) { createQueue(input: {teamId: $t, name: "Support",'
    " slaFirstResponseMinutes: 60, slaResolutionMinutes: 480}) { id } }"
)
CREATE_TICKET = (
    "mutation($q: ID!, $t: String!, $d: String!, $pr: TicketPriority!) { createTicket(input:"
    " {queueId: $q, title: $t, description: $d, priority: $pr}) { id } }"
)
ASSIGN_TICKET = "mutation($id: ID!, $a: ID!) { assignTicket(id: $id, assigneeId: $a) { id } }"


def status(text: str) -> None:
    print(f"[pages] {text}", file=sys.stderr, flush=True)


def code_state() -> str:
    """The commit the servers run, and with uncommitted changes in pulseboard/ a hash of them:
    the work tree can change while the bench runs, and each server starts from what is there."""
    state = revision()
    if not state.endswith("+dirty"):
        return state
    digest = hashlib.sha1()
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        git = ["git", "-C", str(ROOT)]
        digest.update(
            subprocess.run([*git, "diff", "HEAD", "--", "pulseboard"], capture_output=True, timeout=10).stdout
        )
        others = subprocess.run(
            [*git, "ls-files", "--others", "--exclude-standard", "--", "pulseboard"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.split()
        for name in sorted(others):
            digest.update(name.encode() + b"\0" + (ROOT / name).read_bytes())
    return f"{state}:{digest.hexdigest()[:7]}"


# ---------------------------------------------------------------------------------------------
# Data


@dataclass
class Seeded:
    project: str = ""
    queue: str = ""
    tasks: list[str] = field(default_factory=list)
    members: list[str] = field(default_factory=list)  # user ids
    agents: list[str] = field(default_factory=list)


class Tokens:
    """HS256 tokens the server accepts, one per bench user (made on first sight)."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self._tokens: dict[str, str] = {}

    def auth(self, who: str, role: Role = Role.MEMBER) -> dict[str, str]:
        if who not in self._tokens:
            self._tokens[who] = mint_token(
                self.secret, sub=who, email=f"{who}@example.test", name=f"User {who}", role=role,
                ttl=dt.timedelta(hours=2),
            )  # fmt: skip
        return {"authorization": f"Bearer {self._tokens[who]}"}


async def user_id(http: httpx.AsyncClient, auth: dict[str, str]) -> str:
    """The user a token stands for (its first request makes it)."""
    return str((await setup_gql(http, auth, VIEWER))["viewer"]["id"])


async def seed(http: httpx.AsyncClient, tokens: Tokens) -> Seeded:
    """The two pages' data, through pulseboard's own mutations."""
    admin = tokens.auth("admin", Role.ADMIN)
    out = Seeded()
    out.project = (await setup_gql(http, admin, CREATE_PROJECT, n="Bench board"))["createProject"]["id"]
    for i in range(MEMBERS):
        out.members.append(await user_id(http, tokens.auth(f"member{i}")))
        await setup_gql(http, admin, ADD_MEMBER, p=out.project, u=out.members[-1])
    statuses = [s.name for s in TaskStatus]
    priorities = ["LOW", "MEDIUM", "HIGH", "URGENT"]
    for i in range(TASKS):
        created = await setup_gql(
            http, admin, CREATE_TASK, p=out.project, t=f"Task number {i}", s=statuses[i % 4],
            pr=priorities[(i // 4) % 4], a=out.members[i % MEMBERS],
        )  # fmt: skip
        out.tasks.append(created["createTask"]["id"])
    team = (await setup_gql(http, admin, CREATE_TEAM, n="Bench support"))["createTeam"]["id"]
    for i in range(AGENTS):
        out.agents.append(await user_id(http, tokens.auth(f"agent{i}", Role.AGENT)))
        await setup_gql(http, admin, ADD_AGENT, t=team, u=out.agents[-1])
    out.queue = (await setup_gql(http, admin, CREATE_QUEUE, t=team))["createQueue"]["id"]
    for i in range(TICKETS):
        requester = tokens.auth(f"member{i % MEMBERS}")
        created = await setup_gql(
            http, requester, CREATE_TICKET, q=out.queue, t=f"Ticket number {i}",
            d=f"What went wrong, case {i}.", pr=["LOW", "NORMAL", "HIGH", "URGENT"][i % 4],
        )  # fmt: skip
        ticket = created["createTicket"]["id"]
        await setup_gql(http, admin, ASSIGN_TICKET, id=ticket, a=out.agents[i % AGENTS])
    return out


# ---------------------------------------------------------------------------------------------
# Servers


async def wait_ready(probe: Any, process: subprocess.Popen[bytes], name: str, within: float = 60) -> None:
    """Until `probe()` (an awaitable bool) holds 4 times in a row."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}")
        ok = 0
        for _ in range(4):
            with contextlib.suppress(httpx.TransportError):
                ok += bool(await probe())
        if ok == 4:
            return
        await asyncio.sleep(0.3)
    raise RuntimeError(f"{name} did not become ready in {within:.0f} s")


class Server:
    name = ""
    page_queries: dict[str, str] = {}

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.url = self.base + "/graphql"
        self.headers: dict[str, dict[str, str]] = {}  # per page
        self.process: subprocess.Popen[bytes] | None = None
        self.log = tempfile.NamedTemporaryFile(prefix=f"http-{self.name}-", suffix=".log", delete=False)  # noqa: SIM115

    def variables(self, page: str, seeded: Seeded) -> dict[str, Any]:
        raise NotImplementedError

    def body(self, page: str, seeded: Seeded) -> str:
        return json.dumps({"query": self.page_queries[page], "variables": self.variables(page, seeded)})

    def rows(self, page: str, data: dict[str, Any]) -> tuple[int, list[tuple[Any, ...]]]:
        raise NotImplementedError

    async def fetch(self, page: str, seeded: Seeded) -> tuple[int, list[tuple[Any, ...]]]:
        async with httpx.AsyncClient(base_url=self.base, timeout=30, trust_env=False) as http:
            body = json.loads(self.body(page, seeded))
            data = await gql(http, self.headers.get(page, {}), body["query"], **body["variables"])  # type: ignore[arg-type]
        return self.rows(page, data)

    def stop(self) -> list[str]:
        """Stops the server; its log's error lines."""
        if self.process is not None:
            stop_server(self.process)
            self.process = None
        return read_server_log(self.log.name, None)


def when(value: str | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromisoformat(value)


def person(user: dict[str, Any] | None) -> tuple[str, str] | None:
    return None if user is None else (str(user["id"]), user["name"])


def task_row(node: dict[str, Any], status: str, assignee: dict[str, Any] | None) -> tuple[Any, ...]:
    """A page row to compare across servers (ids as strings, timestamps parsed)."""
    return (str(node["id"]), node["title"], status, node["position"], node["priority"], person(assignee))


def ticket_row(
    node: dict[str, Any], requester: dict[str, Any], assignee: dict[str, Any] | None
) -> tuple[Any, ...]:
    times = (when(node[key]) for key in ("createdAt", "updatedAt", "firstResponseAt", "resolvedAt"))
    scalars = (node[key] for key in ("title", "description", "status", "priority", "version"))
    return (str(node["id"]), *scalars, *times, person(requester), person(assignee))


class Pulseboard(Server):
    page_queries = {"tasks": TASKS_PB, "tickets": TICKETS_PB}

    def __init__(self, database_url: str, workers: int, args: argparse.Namespace, tokens: Tokens) -> None:
        self.name = f"pulseboard-{workers}w"
        super().__init__(database_url)
        self.workers = workers
        self.args = args
        self.tokens = tokens
        namespace = SimpleNamespace(db_pool_max=None, redis_url=args.redis_url, deflate=False)
        self.env = server_env(namespace, database_url, tokens.secret)  # type: ignore[arg-type]
        self.env.update(
            PULSEBOARD_ENV="production",
            PULSEBOARD_WORKERS=str(workers),
            PULSEBOARD_OVERLOAD_LAG_MS="0",  # no 503s under load: measure, don't shed
        )
        admin = tokens.auth("admin", Role.ADMIN)
        member = args.viewer == "member"
        self.headers = {
            "tasks": tokens.auth("member0") if member else admin,
            "tickets": tokens.auth("agent0", Role.AGENT) if member else admin,
            "update": admin,
        }

    async def start(self) -> None:
        # Once, before the workers: each worker also migrates at startup, and two workers that
        # find the same migration pending (the work tree may have gained one) both apply it.
        await asyncio.to_thread(migrate, self.env)
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
            env=self.env,
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: its workers go with it
        )
        wanted = 1 if self.workers == 1 else self.workers + 1
        assert self.process is not None
        process = self.process
        async with httpx.AsyncClient(timeout=2, trust_env=False) as http:

            async def probe() -> bool:
                answer = await http.get(self.base + "/healthz")
                return answer.status_code == 200 and len(process_tree(process.pid)) >= wanted

            await wait_ready(probe, process, self.name)

    def variables(self, page: str, seeded: Seeded) -> dict[str, Any]:
        return {"p": seeded.project} if page == "tasks" else {"q": seeded.queue}

    def update_bodies(self, seeded: Seeded) -> list[str]:
        """updateTask over every task in turn. Each update changes the title ("Task number 7" and
        "Task Number 7" by turns), and the board keeps its size for the rows after it."""
        bodies = []
        for turn in ("Task Number", "Task number"):
            for i, task in enumerate(seeded.tasks):
                bodies.append(
                    json.dumps({"query": UPDATE_TASK, "variables": {"id": task, "t": f"{turn} {i}"}})
                )
        return bodies

    def rows(self, page: str, data: dict[str, Any]) -> tuple[int, list[tuple[Any, ...]]]:
        connection = data[page]
        nodes = [edge["node"] for edge in connection["edges"]]
        if page == "tasks":
            return connection["totalCount"], [task_row(n, n["status"], n["assignee"]) for n in nodes]
        return connection["totalCount"], [ticket_row(n, n["requester"], n["assignee"]) for n in nodes]


class PostGraphile(Server):
    name = "postgraphile"
    page_queries = {"tasks": TASKS_PG, "tickets": TICKETS_PG}

    async def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PULSEBOARD_")}
        env["NODE_ENV"] = "production"
        self.process = subprocess.Popen(  # noqa: ASYNC220 (returns at once; the bench waits below)
            [
                str(NODE_DIR / "node_modules" / ".bin" / "postgraphile"),
                "--connection", self.database_url, "--schema", "public",
                "--host", "127.0.0.1", "--port", str(self.port),
                "--disable-graphiql", "--disable-query-log", "--max-pool-size", "10",
            ],
            env=env,
            cwd=NODE_DIR,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        assert self.process is not None
        async with httpx.AsyncClient(timeout=2, trust_env=False) as http:

            async def probe() -> bool:
                answer = await http.post(self.url, json={"query": "{ __typename }"})
                return answer.status_code == 200

            await wait_ready(probe, self.process, self.name)

    def variables(self, page: str, seeded: Seeded) -> dict[str, Any]:
        return {"p": int(seeded.project)} if page == "tasks" else {"q": int(seeded.queue)}

    def rows(self, page: str, data: dict[str, Any]) -> tuple[int, list[tuple[Any, ...]]]:
        connection = data["allTasks" if page == "tasks" else "allTickets"]
        nodes = connection["nodes"]
        if page == "tasks":
            # The column holds pulseboard's TaskStatus as an integer (board order); the API names it.
            return connection["totalCount"], [
                task_row(n, TaskStatus(n["status"]).name, n["userByAssigneeId"]) for n in nodes
            ]
        return connection["totalCount"], [
            ticket_row(n, n["userByRequesterId"], n["userByAssigneeId"]) for n in nodes
        ]


# ---------------------------------------------------------------------------------------------
# Load


def tree_ticks(root: int) -> dict[int, int]:
    return {pid: cpu_ticks(pid) for pid in process_tree(root)}


def ticks_since(start: dict[int, int], now: dict[int, int]) -> dict[int, float]:
    """CPU seconds per process since `start` (a process that appeared since counts whole)."""
    return {pid: max(0, ticks - start.get(pid, 0)) / CLK_TCK for pid, ticks in now.items()}


async def load(
    server: Server,
    page: str,
    body: list[str],
    args: argparse.Namespace,
    admin_url: str,
    db_name: str,
    rate: float,
) -> dict[str, Any]:
    """One row: autocannon's warm-up, then the measured window with the CPU read around it."""
    assert server.process is not None
    driver = await asyncio.create_subprocess_exec(
        "node", str(NODE_DIR / "load.js"), cwd=NODE_DIR, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, start_new_session=True, limit=16 * 1024 * 1024,
    )  # fmt: skip
    assert driver.stdin is not None and driver.stdout is not None
    config = {
        "url": server.url, "headers": server.headers.get(page, {}), "bodies": body,
        "connections": args.connections, "warmup": args.warmup, "duration": args.duration, "rate": rate,
    }  # fmt: skip

    async def answer(within: float) -> dict[str, Any]:
        line = await asyncio.wait_for(driver.stdout.readline(), within)  # type: ignore[union-attr]
        if not line:
            raise RuntimeError(f"load driver exited ({await driver.wait()})")
        message: dict[str, Any] = json.loads(line)
        if message["event"] == "error":
            raise RuntimeError(f"load driver: {message['error']}")
        return message

    try:
        driver.stdin.write(json.dumps(config).encode() + b"\n")
        await driver.stdin.drain()
        await answer(args.warmup + 30)
        pg_pids = await backend_pids(admin_url, db_name)
        server_0, client_0 = tree_ticks(server.process.pid), cpu_ticks(driver.pid)
        pg_0 = {pid: cpu_ticks(pid) for pid in pg_pids}
        busy_0, total_0 = machine_ticks()
        driver.stdin.write(b"go\n")
        await driver.stdin.drain()
        result = await answer(args.duration + 30)
        busy_1, total_1 = machine_ticks()
        server_s = ticks_since(server_0, tree_ticks(server.process.pid))
        client_s = (cpu_ticks(driver.pid) - client_0) / CLK_TCK
        pg_now = {pid: cpu_ticks(pid) for pid in await backend_pids(admin_url, db_name)}
        pg_s = sum(ticks_since(pg_0, pg_now).values())
    finally:
        with contextlib.suppress(OSError):
            driver.stdin.close()
        try:
            await asyncio.wait_for(driver.wait(), 10)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                driver.kill()
            await driver.wait()
    seconds = float(result["duration"]) or args.duration
    good = int(result["ok"])  # 2xx answers with data and without errors
    requests = max(1, good)
    row: dict[str, Any] = {
        "server": server.name,
        "page": page,
        "rate": rate,
        "requests_per_s": good / seconds,
        "p50_ms": result["p50"],
        "p99_ms": result["p99"],
        "max_ms": result["max"],
        "requests": good,
        "failed": result["non2xx"] + result["errors"] + result["timeouts"] + result["mismatches"],
        "cpu_ms_per_request": 1000 * sum(server_s.values()) / requests,
        "cpu_pct": 100 * sum(server_s.values()) / seconds,
        "pg_ms_per_request": 1000 * pg_s / requests,
        "client_cpu_pct": 100 * client_s / seconds,
        "busy_pct": 100 * (busy_1 - busy_0) / max(1, total_1 - total_0),
        # The machine's busy time less the server's, its PostgreSQL backends' and autocannon's:
        # other users of the machine, in % of one core.
        "others_pct": (os.cpu_count() or 1) * 100 * (busy_1 - busy_0) / max(1, total_1 - total_0)
        - 100 * (sum(server_s.values()) + pg_s + client_s) / seconds,
        "bytes_per_request": result["bytes"] / requests,
        "notes": [],
    }
    if row["failed"]:
        row["notes"].append(
            f"{row['failed']} failed (non-2xx {result['non2xx']}, errors {result['errors']},"
            f" timeouts {result['timeouts']}, GraphQL errors {result['mismatches']})"
        )
    if server.process.poll() is not None:
        row["notes"].append(f"the server exited ({server.process.returncode}): see the log errors below")
    if isinstance(server, Pulseboard) and server.workers > 1:
        busiest = sorted(server_s.values(), reverse=True)[: server.workers]
        row["notes"].append("worker CPU " + " / ".join(f"{100 * s / seconds:.0f} %" for s in busiest))
        if busiest[-1] < busiest[0] / 3:
            row["notes"].append(
                "uneven: a keep-alive connection stays on the worker that accepted it, and most of"
                f" the {args.connections} landed on one"
            )
    return row


# ---------------------------------------------------------------------------------------------
# The run


def sanity(
    page: str, ours: tuple[int, list[tuple[Any, ...]]], theirs: tuple[int, list[tuple[Any, ...]]] | None
) -> str:
    count, rows = ours
    text = f"{page}: pulseboard totalCount {count}, {len(rows)} rows"
    if theirs is None:
        return text
    their_count, their_rows = theirs
    if count != their_count or [r[0] for r in rows] != [r[0] for r in their_rows]:
        sys.exit(
            f"http: {page} differs: pulseboard {count} / {[r[0] for r in rows]},"
            f" postgraphile {their_count} / {[r[0] for r in their_rows]}"
        )
    differing = sum(a != b for a, b in zip(rows, their_rows, strict=True))
    same = "every field equal" if not differing else f"{differing} rows differ in a field"
    return f"{text} = postgraphile's ({same}, same ids in the same order)"


async def run(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    machine: dict[str, Any] = {
        "cores": os.cpu_count(),
        "load_before": " / ".join(f"{x:.2f}" for x in os.getloadavg()),
        "revision": code_state(),
        "started": dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
    }
    db_name = f"pulseboard_bench_http_{secrets.token_hex(3)}"
    database_url = with_database(args.database_url, db_name)
    tokens = Tokens(secrets.token_urlsafe(48))
    reads = [p for p in args.page_list if p != "update"]
    rows: list[dict[str, Any]] = []
    await create_database(args.database_url, db_name)
    try:
        first = Pulseboard(database_url, 1, args, tokens)
        await asyncio.to_thread(migrate, first.env)
        await first.start()
        try:
            began = time.monotonic()
            async with httpx.AsyncClient(base_url=first.base, timeout=30, trust_env=False) as http:
                seeded = await seed(http, tokens)
            status(f"seeded {TASKS} tasks and {TICKETS} tickets in {time.monotonic() - began:.1f} s")
            ours = {page: await first.fetch(page, seeded) for page in reads}
        finally:
            problems = first.stop()
        theirs: dict[str, Any] = dict.fromkeys(reads)
        if "postgraphile" in args.server_list and reads:
            check = PostGraphile(database_url)
            await check.start()
            try:
                theirs = {page: await check.fetch(page, seeded) for page in reads}
            finally:
                problems += check.stop()
        if reads:
            print("sanity: " + "; ".join(sanity(p, ours[p], theirs[p]) for p in reads), flush=True)
        for name in args.server_list:
            server = (
                PostGraphile(database_url)
                if name == "postgraphile"
                else Pulseboard(database_url, int(name[-2]), args, tokens)
            )
            pages = [*reads, *(["update"] if name == "pulseboard-1w" and "update" in args.page_list else [])]
            if not pages:
                continue
            status(f"{server.name}: starting")
            code = code_state() if isinstance(server, Pulseboard) else None
            await server.start()
            try:
                for page in pages:
                    rate = args.rate if page == "update" else 0.0
                    body = server.update_bodies(seeded) if page == "update" else [server.body(page, seeded)]  # type: ignore[attr-defined]
                    idle = await wait_idle(args.wait_idle)
                    status(f"{server.name} / {page}: {args.warmup:g} s warm-up, {args.duration:g} s measured")
                    rows.append(await load(server, page, body, args, args.database_url, db_name, rate))
                    rows[-1].update(busy_before_pct=idle, code=code)
                    if server.process is None or server.process.poll() is not None:
                        break
            finally:
                problems += server.stop()
        machine["server_errors"] = problems[:5]
    finally:
        await drop_database(args.database_url, db_name)
    machine["load_after"] = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    return rows, machine


# ---------------------------------------------------------------------------------------------
# Output

ORDER = {(page, server): i for i, (page, server) in enumerate(
    (p, s) for p in PAGES for s in ("pulseboard-1w", "pulseboard-2w", "postgraphile")
)}  # fmt: skip


def ms(value: float) -> str:
    """autocannon's latencies are whole milliseconds; the open loop's are not."""
    if isinstance(value, int) or value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}"


def ratio(row: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    theirs = next((r for r in rows if r["server"] == "postgraphile" and r["page"] == row["page"]), None)
    if theirs is None or row["page"] == "update":
        return "-"
    if row is theirs:
        return "1"
    if not (row["requests"] and theirs["requests"]):
        return "-"
    share = row["requests_per_s"] / theirs["requests_per_s"]
    return f"{share:.2f} (1/{1 / share:.1f})"


def print_table(rows: list[dict[str, Any]], machine: dict[str, Any], args: argparse.Namespace) -> None:
    header = [
        "server", "page", "requests/s", "p50 ms", "p99 ms", "server CPU ms / request (% core)",
        "PostgreSQL CPU ms / request", "load tool CPU %", "machine busy % before / during",
        "others % core", "ratio to PostGraphile", "notes",
    ]  # fmt: skip
    print()
    print(
        f"HTTP request path, {machine['revision']}, {machine['started']}: autocannon, {args.connections}"
        f" connections, {args.warmup:g} s warm-up + {args.duration:g} s measured per row,"
        f" viewer {args.viewer}; figures from this one run."
    )
    print()
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    one_worker = {r["page"]: r for r in rows if r["server"] == "pulseboard-1w"}
    for row in sorted(rows, key=lambda r: ORDER[(r["page"], r["server"])]):
        notes = list(row["notes"])
        if row["page"] == "update":
            notes.insert(0, f"updateTask at {row['rate']:g}/s offered, open loop")
        if row["code"] not in (None, machine["revision"]):
            notes.append(f"code changed during the run: {row['code']}")
        if not row["requests"]:
            notes.insert(0, "FAILED: no good answer")
        if row["server"] == "pulseboard-2w" and row["page"] in one_worker and row["requests"]:
            times = row["requests_per_s"] / max(1e-9, one_worker[row["page"]]["requests_per_s"])
            notes.insert(0, f"{times:.2f}x 1 worker")
        cells = [
            row["server"],
            "updateTask" if row["page"] == "update" else row["page"],
            f"{row['requests_per_s']:,.0f}"
            if row["requests_per_s"] >= 100
            else f"{row['requests_per_s']:.1f}",
            ms(row["p50_ms"]),
            ms(row["p99_ms"]),
            f"{row['cpu_ms_per_request']:.2f} ({row['cpu_pct']:.0f} %)",
            f"{row['pg_ms_per_request']:.2f}",
            f"{row['client_cpu_pct']:.0f}",
            f"{row['busy_before_pct']:.0f} / {row['busy_pct']:.0f}",
            f"{max(0.0, row['others_pct']):.0f}",
            ratio(row, rows),
            "; ".join(notes),
        ]
        print("| " + " | ".join(cells) + " |")
    print()
    cores = machine["cores"]
    print(
        f"Machine: {cores} cores (os.cpu_count()), load average {machine['load_before']} before and"
        f" {machine['load_after']} after. Server, autocannon and PostgreSQL share these cores: 2 workers"
        " need 2 cores beside the load generator and PostgreSQL"
        + (" to scale, which this machine does not have." if cores is not None and cores < 4 else ".")
    )
    print(
        "requests/s: responses ÷ the measured seconds; p50/p99: autocannon's latency (1 ms steps;"
        " updateTask: from when each request was due);"
        " CPU: user+sys of the server's process tree / of the scratch database's PostgreSQL backends over"
        " the window ÷ responses; others: the machine's busy time less the server's, PostgreSQL's and"
        " autocannon's; ratio: requests/s ÷ PostGraphile's on the same page."
    )
    if machine.get("server_errors"):
        print("Server log errors: " + " | ".join(line[:200] for line in machine["server_errors"]))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--servers", default=",".join(SERVERS), help=f"in order (default {','.join(SERVERS)})"
    )
    parser.add_argument("--pages", default=",".join(PAGES), help=f"default {','.join(PAGES)}")
    parser.add_argument(
        "--skip-postgraphile", action="store_true", help="leave postgraphile out of --servers"
    )
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of load before each measurement")
    parser.add_argument("--duration", type=float, default=15.0, help="measured seconds per row")
    parser.add_argument("--rate", type=float, default=100.0, help="updateTask mutations per second")
    parser.add_argument(
        "--viewer",
        choices=("admin", "member"),
        default="admin",
        help="who reads: an admin, or a project member (tasks) and a queue agent (tickets)",
    )
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
        help="before each row, wait up to S s for 2 s with the machine less than 35 %% busy",
    )
    parser.add_argument("--json", action="store_true", help="also print every row as a JSON line")
    args = parser.parse_args(argv)
    require_loopback(args.database_url, "--database-url")
    require_loopback(args.redis_url, "--redis-url")
    args.server_list = [s.strip() for s in args.servers.split(",") if s.strip()]
    if args.skip_postgraphile:
        args.server_list = [s for s in args.server_list if s != "postgraphile"]
    args.page_list = [p.strip() for p in args.pages.split(",") if p.strip()]
    if set(args.server_list) - set(SERVERS) or not args.server_list:
        parser.error(f"--servers: choose from {', '.join(SERVERS)}")
    if set(args.page_list) - set(PAGES) or not args.page_list:
        parser.error(f"--pages: choose from {', '.join(PAGES)}")
    if not (1 <= args.connections <= 1000 and 0 <= args.warmup <= 600 and 0 < args.duration <= 600):
        parser.error("--connections 1..1000, --warmup 0..600, --duration (0, 600]")
    if not 0 <= args.wait_idle <= 3600:
        parser.error("--wait-idle must be in [0, 3600]")
    if not 0 < args.rate <= 10000:
        parser.error("--rate must be in (0, 10000]")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not (NODE_DIR / "node_modules" / "autocannon" / "package.json").is_file():
        sys.exit("http: run `npm ci --prefix bench/postgraphile` first")
    if shutil.which("node") is None:
        sys.exit("http: needs node 20+ on PATH")
    rows, machine = asyncio.run(run(args))
    print_table(rows, machine, args)
    if args.json:
        for row in rows:
            print(json.dumps({**row, "machine": machine}, default=str))


if __name__ == "__main__":
    main()
