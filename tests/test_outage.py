"""Faults at the database's edge: an outage answers 503 SERVICE_UNAVAILABLE (and closes new
sockets with 1013) instead of a bare 500, and the server recovers by itself; timeouts and
conflicts are retryable; serialization failures and deadlocks are retried inside the server; a
unique race answers BAD_USER_INPUT; and the log says each kind of failure once per interval.

The tests that stop PostgreSQL use a cluster of their own and run the server in its own process
(as tests/test_delivery_faults.py does): one process cannot use Tortoise with both SQLite and
PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from graphql import GraphQLError
from tortoise.exceptions import DBConnectionError, IntegrityError, OperationalError
from websockets.asyncio.client import connect

from pulseboard import telemetry
from pulseboard.errors import AppError, DatabaseFault, ErrorCode, database_fault, retried_conflict
from pulseboard.models import Role
from pulseboard.resolvers import events, users
from pulseboard.schema.errors import classify
from pulseboard.settings import Settings
from tests.conftest import ON_POSTGRES
from tests.helpers import Api, code
from tests.live import PROTOCOL, TIMEOUT, WS, LiveServer, worker_process, ws
from tests.services import PostgresCluster

GRAPHQL_RESPONSE = "application/graphql-response+json"
PROJECT = 'mutation { createProject(input: {name: "Outage"}) { id } }'
TASK = "mutation($p: ID!, $t: String!) { createTask(input: {projectId: $p, title: $t}) { id } }"
TASKS = "query($p: ID!) { tasks(projectId: $p) { totalCount } }"
TEAM = "mutation($n: String!) { createTeam(input: {name: $n}) { id } }"
postgres_only = pytest.mark.skipif(not ON_POSTGRES, reason="needs PostgreSQL's row locks and errors")


def _own_server(settings: Settings, cluster: PostgresCluster, **env: str) -> Iterator[LiveServer]:
    own = dataclasses.replace(settings, database_url=cluster.create_database("app"))
    with worker_process(own, env=env) as server:
        yield server


@pytest.fixture
def on_private(settings: Settings, private_postgres: PostgresCluster) -> Iterator[LiveServer]:
    yield from _own_server(settings, private_postgres)


def _log(server: LiveServer) -> str:
    """What the worker wrote to stderr so far (worker_process gives it an unnamed file)."""
    assert server.process is not None
    return Path(f"/proc/{server.process.pid}/fd/2").read_text(errors="replace")


_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ \w+ (\S+): ", re.MULTILINE)
# Background loops of other parts, which log their own failures (not once per request).
_BACKGROUND = ("pulseboard.subscriptions.access",)


def _tracebacks(log: str) -> list[str]:
    """The log's records that carry a traceback, but for those of background loops."""
    starts = [m.start() for m in _RECORD.finditer(log)] + [len(log)]
    found = []
    for start, end in itertools.pairwise(starts):
        record = log[start:end]
        match = _RECORD.match(record)
        if "Traceback" in record and match is not None and match.group(1) not in _BACKGROUND:
            found.append(record)
    return found


async def _post(
    http: httpx.AsyncClient,
    server: LiveServer,
    token: str,
    query: str,
    accept: str | None = None,
    **variables: Any,
) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"}
    if accept:
        headers["accept"] = accept
    return await http.post(
        server.url + "/graphql", json={"query": query, "variables": variables}, headers=headers
    )


def _unavailable(response: httpx.Response, media: str) -> dict[str, Any]:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"
    assert response.headers["content-type"].startswith(media)
    [error] = response.json()["errors"]
    assert error["extensions"] == {"code": "SERVICE_UNAVAILABLE", "retryAfterSeconds": 1}, error
    return error  # type: ignore[no-any-return]


def _local_port(response: httpx.Response) -> int:
    return int(response.extensions["network_stream"].get_extra_info("client_addr")[1])


async def _until_answered(server: LiveServer, token: str, query: str, within: float = 30) -> dict[str, Any]:
    """The data of `query` once the server answers it again (the database is back)."""
    deadline = asyncio.get_running_loop().time() + within
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        while True:
            body = (await _post(http, server, token, query)).json()
            if not body.get("errors"):
                return body["data"]  # type: ignore[no-any-return]
            assert body["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE", body
            assert asyncio.get_running_loop().time() < deadline, body
            await asyncio.sleep(0.2)


# --- an outage ----------------------------------------------------------------------------------


async def test_an_outage_answers_503_on_kept_alive_connections_and_the_server_recovers(
    on_private: LiveServer, private_postgres: PostgresCluster
) -> None:
    known = on_private.token("ada@example.test", Role.ADMIN)
    await on_private.gql(known, PROJECT)  # ada is read (and remembered) before the outage
    await asyncio.to_thread(private_postgres.stop)
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT, limits=httpx.Limits(max_connections=1)) as http:
            responses = []
            for n in range(8):
                stranger = on_private.token(f"new{n}@example.test")
                for accept in (GRAPHQL_RESPONSE, None):
                    # A viewer not seen yet: reading them fails before execution.
                    responses.append(
                        (await _post(http, on_private, stranger, "{ viewer { id } }", accept), accept)
                    )
                    # A viewer remembered: the mutation fails during execution, as a whole.
                    responses.append((await _post(http, on_private, known, PROJECT, accept), accept))
            for response, accept in responses:
                error = _unavailable(response, accept or "application/json")
                assert "unavailable" in error["message"] and "connect" not in error["message"].lower()
                assert response.headers.get("connection") != "close"
            # Every answer came on the one kept-alive connection: none was reset.
            assert len({_local_port(response) for response, _ in responses}) == 1
    finally:
        await asyncio.to_thread(private_postgres.start)
    late = on_private.token("late@example.test")
    assert (await _until_answered(on_private, late, "{ viewer { email } }"))["viewer"][
        "email"
    ] == "late@example.test"
    await on_private.gql(known, PROJECT)
    # 32 failed requests, yet the log says so in a line or two (no traceback per request).
    log = _log(on_private)
    assert not _tracebacks(log), log
    lines = [line for line in log.splitlines() if "database unavailable" in line]
    assert 1 <= len(lines) <= 3, log


async def test_a_socket_opened_during_an_outage_closes_1013_and_open_ones_keep_working(
    on_private: LiveServer, private_postgres: PostgresCluster
) -> None:
    token = on_private.token("ada@example.test", Role.ADMIN)
    await on_private.gql(token, "{ viewer { id } }")
    async with ws(on_private, token) as open_before:
        await asyncio.to_thread(private_postgres.stop)
        try:
            async with ws(on_private) as late:  # the token in connection_init
                await late.send(
                    {
                        "type": "connection_init",
                        "payload": {"authorization": "Bearer " + on_private.token("b@example.test")},
                    }
                )
                close_code, reason = await late.closed()
            assert close_code == 1013 and "try again" in reason.lower()
            handshake = {"authorization": "Bearer " + on_private.token("c@example.test")}
            async with connect(
                on_private.ws_url, subprotocols=[PROTOCOL], additional_headers=handshake
            ) as conn:  # type: ignore[list-item]
                by_header = WS(conn)
                await by_header.send({"type": "connection_init", "payload": {}})
                assert (await by_header.closed())[0] == 1013
            # The socket open before stays open: it answers, and says what failed.
            await open_before.send({"type": "ping"})
            assert await open_before.receive() == {"type": "pong"}
            await open_before.subscribe("1", PROJECT)
            failed = await open_before.receive()
            assert failed["type"] == "next" and code_of(failed) == "SERVICE_UNAVAILABLE", failed
            assert (await open_before.receive())["type"] == "complete"
        finally:
            await asyncio.to_thread(private_postgres.start)
        await _until_answered(on_private, token, PROJECT)
        await open_before.subscribe("2", PROJECT)
        assert (await open_before.next("2"))["createProject"]["id"]
    async with ws(on_private, on_private.token("b@example.test")) as again:  # connects again
        await again.send({"type": "ping"})
        assert await again.receive() == {"type": "pong"}
    assert not _tracebacks(_log(on_private))


def code_of(message: dict[str, Any]) -> str:
    return str(message["payload"]["errors"][0]["extensions"]["code"])


# --- timeouts -----------------------------------------------------------------------------------


@pytest.fixture
def statement_timeout(settings: Settings, private_postgres: PostgresCluster) -> Iterator[LiveServer]:
    url = private_postgres.create_database("app")

    async def limit() -> None:
        conn = await asyncpg.connect(private_postgres.url().replace("postgres://", "postgresql://", 1))
        try:
            await conn.execute("ALTER DATABASE app SET statement_timeout = '300ms'")
        finally:
            await conn.close()

    asyncio.run(limit())
    own = dataclasses.replace(settings, database_url=url)
    # The server's own setting, where it has one, overrides the database's default.
    with worker_process(own, env={"PULSEBOARD_DATABASE_STATEMENT_TIMEOUT_SECONDS": "0.3"}) as server:
        yield server


async def test_a_statement_timeout_is_retryable_and_rolled_back(
    statement_timeout: LiveServer, private_postgres: PostgresCluster
) -> None:
    server = statement_timeout
    token = server.token("ada@example.test", Role.ADMIN)
    project = (await server.gql(token, PROJECT))["createProject"]["id"]
    blocker = await asyncpg.connect(private_postgres.url("app").replace("postgres://", "postgresql://", 1))
    try:
        async with blocker.transaction():  # the board stays locked past the statement timeout
            await blocker.execute("SELECT id FROM projects WHERE id = $1 FOR UPDATE", int(project))
            async with httpx.AsyncClient(timeout=TIMEOUT) as http:
                response = await _post(http, server, token, TASK, GRAPHQL_RESPONSE, p=project, t="slow")
            error = _unavailable(response, GRAPHQL_RESPONSE)
            assert "rolled back" in error["message"] and "safe to retry" in error["message"]
    finally:
        await blocker.close()
    await server.gql(token, TASK, p=project, t="retried")
    assert (await server.gql(token, TASKS, p=project))["tasks"]["totalCount"] == 1
    assert not _tracebacks(_log(server))


# --- classification -----------------------------------------------------------------------------


def _raised(error: BaseException) -> BaseException:
    """`error` as Tortoise raises a driver's: wrapped, with a traceback through the driver."""
    try:
        try:
            raise error
        except Exception as inner:
            raise OperationalError(inner) from inner
    except OperationalError as wrapped:
        return wrapped


@pytest.mark.parametrize(
    ("error", "fault"),
    [
        (asyncpg.CannotConnectNowError("the database system is starting up"), DatabaseFault.UNAVAILABLE),
        (asyncpg.CannotConnectNowError("the database system is shutting down"), DatabaseFault.UNAVAILABLE),
        (
            asyncpg.AdminShutdownError("terminating connection due to administrator command"),
            DatabaseFault.UNAVAILABLE,
        ),
        (asyncpg.ConnectionDoesNotExistError("connection was closed"), DatabaseFault.UNAVAILABLE),
        (asyncpg.TooManyConnectionsError("sorry, too many clients already"), DatabaseFault.UNAVAILABLE),
        (asyncpg.InterfaceError("pool is closing"), DatabaseFault.UNAVAILABLE),
        (DBConnectionError("no connection"), DatabaseFault.UNAVAILABLE),
        (asyncpg.QueryCanceledError("canceling statement due to statement timeout"), DatabaseFault.TIMEOUT),
        (asyncpg.LockNotAvailableError("canceling statement due to lock timeout"), DatabaseFault.TIMEOUT),
        (asyncpg.SerializationError("could not serialize access"), DatabaseFault.CONFLICT),
        (asyncpg.DeadlockDetectedError("deadlock detected"), DatabaseFault.CONFLICT),
        (asyncpg.UniqueViolationError("duplicate key"), None),
        (asyncpg.UndefinedTableError("relation does not exist"), None),
        (ValueError("a bug"), None),
        (AppError(ErrorCode.NOT_FOUND, "gone"), None),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value),
)
def test_database_faults_are_told_apart(error: BaseException, fault: DatabaseFault | None) -> None:
    assert database_fault(error) is fault
    assert database_fault(_raised(error)) is fault
    assert retried_conflict(error) is (fault is DatabaseFault.CONFLICT)


def test_an_os_error_is_a_fault_only_from_the_driver() -> None:
    assert database_fault(ConnectionRefusedError(111, "Connect call failed")) is None  # not raised by it
    assert database_fault(TimeoutError()) is None
    driver: dict[str, Any] = {"__name__": "asyncpg.connect_utils"}  # a function of the driver's
    exec("def connect():\n    raise ConnectionRefusedError(111, 'Connect call failed')", driver)
    with pytest.raises(OSError) as refused:
        driver["connect"]()
    assert database_fault(refused.value) is DatabaseFault.UNAVAILABLE
    assert database_fault(_raised(refused.value)) is DatabaseFault.UNAVAILABLE


@pytest.mark.parametrize("mask", [True, False])
def test_a_fault_is_service_unavailable_and_shows_no_internals(
    mask: bool, caplog: pytest.LogCaptureFixture
) -> None:
    original = asyncpg.QueryCanceledError("canceling statement due to statement timeout on 10.0.0.7")
    error = classify(GraphQLError("x", path=["createTask"], original_error=original), mask=mask)
    assert error.extensions == {"code": "SERVICE_UNAVAILABLE", "retryAfterSeconds": 1}
    assert "10.0.0.7" not in error.message and "safe to retry" in error.message
    assert error.path == ["createTask"]


# --- the rate-limited log -----------------------------------------------------------------------


async def test_log_limited_says_the_first_and_then_how_many_more(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("pulseboard.test_outage")
    key = f"test fault {id(caplog)}"
    with caplog.at_level(logging.WARNING, logger="pulseboard.test_outage"):
        logged = [telemetry.log_limited(logger, key, "failed: %s", n, interval=0.3) for n in range(5)]
        assert logged == [True, False, False, False, False]
        await asyncio.sleep(0.45)  # the interval ends: one line counts the others
        assert [r.getMessage() for r in caplog.records] == ["failed: 0", f"{key}: 4 more in the last 0.3 s"]
        assert all(r.exc_info is None for r in caplog.records)
        telemetry.log_limited(logger, key, "failed: %s", 5, interval=0.3)  # still failing: counted
        await asyncio.sleep(0.45)
        assert caplog.records[-1].getMessage() == f"{key}: 1 more in the last 0.3 s"
        await asyncio.sleep(0.45)  # an interval without one: the next is logged whole again
        assert telemetry.log_limited(logger, key, "failed: %s", 6, interval=0.3)
        assert [r.getMessage() for r in caplog.records][-1] == "failed: 6"


# --- unique races -------------------------------------------------------------------------------


async def test_twelve_concurrent_create_team_one_wins_the_others_bad_user_input(api: Api) -> None:
    admin = await api.person(Role.ADMIN)
    bodies = await asyncio.gather(*(api.post(admin, TEAM, {"n": "Racers"}) for _ in range(12)))
    won = [b for b in bodies if not b.get("errors")]
    lost = [b["errors"][0] for b in bodies if b.get("errors")]
    assert len(won) == 1, bodies
    assert [code(e) for e in lost] == ["BAD_USER_INPUT"] * 11, lost
    assert all(e["extensions"]["field"] == "name" and "exists already" in e["message"] for e in lost)


async def test_concurrent_adds_of_one_member_all_succeed(api: Api) -> None:
    admin = await api.person(Role.ADMIN)
    member = await api.person()
    team = (await api.ok(admin, TEAM, n="Adders"))["createTeam"]["id"]
    add = "mutation($t: ID!, $u: ID!) { addTeamMember(teamId: $t, userId: $u) { id } }"
    bodies = await asyncio.gather(*(api.post(admin, add, {"t": team, "u": member.id}) for _ in range(12)))
    assert all(not b.get("errors") for b in bodies), bodies
    project = (await api.ok(admin, PROJECT))["createProject"]["id"]
    add_to_project = "mutation($p: ID!, $u: ID!) { addProjectMember(projectId: $p, userId: $u) { id } }"
    bodies = await asyncio.gather(
        *(api.post(admin, add_to_project, {"p": project, "u": member.id}) for _ in range(12))
    )
    assert all(not b.get("errors") for b in bodies), bodies


# --- serialization failures and deadlocks are retried -------------------------------------------


async def _conflict(conn: Any) -> None:
    """A serialization failure: PostgreSQL's own on PostgreSQL, asyncpg's exception on SQLite."""
    if ON_POSTGRES:
        await conn.execute_script(
            "DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = 'serialization_failure'; END $$"
        )
    raise asyncpg.SerializationError("could not serialize access due to concurrent update")


async def test_retrying_runs_the_whole_unit_again_after_a_serialization_failure(api: Api) -> None:
    admin = await api.person(Role.ADMIN)
    runs = []

    async def unit() -> int:
        runs.append(await users.User.filter(id=int(admin.id)).count())  # its reads run again too
        async with events.transaction(None) as tx:
            if len(runs) < 3:
                await _conflict(tx.conn)
        return len(runs)

    assert await events.retrying(unit) == 3
    assert runs == [1, 1, 1]

    async def always() -> None:
        async with events.transaction(None) as tx:
            await _conflict(tx.conn)

    with pytest.raises(Exception) as raised:
        await events.retrying(always)
    assert retried_conflict(raised.value)


async def test_a_unit_that_committed_is_not_run_again(api: Api) -> None:
    runs = 0

    async def unit() -> None:
        nonlocal runs
        runs += 1
        async with events.transaction(None):
            pass  # committed: running the unit again would repeat it
        async with events.transaction(None) as tx:
            await _conflict(tx.conn)

    with pytest.raises(Exception) as raised:
        await events.retrying(unit)
    assert runs == 1 and retried_conflict(raised.value)


async def test_a_mutation_is_retried_and_past_the_bound_answers_503(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = await api.person(Role.ADMIN)
    create_team = users.create_team
    calls = 0

    async def conflicted(ctx: Any, *, name: str) -> Any:
        nonlocal calls
        calls += 1
        if calls < 3 or name == "Never":
            async with events.transaction(None) as tx:
                await _conflict(tx.conn)
        return await create_team(ctx, name=name)

    monkeypatch.setattr(users, "create_team", conflicted)
    assert (await api.ok(admin, TEAM, n="Eventually"))["createTeam"]["id"]
    assert calls == 3
    response = await api.http.post(
        "/graphql",
        json={"query": TEAM, "variables": {"n": "Never"}},
        headers={"authorization": f"Bearer {admin.token}"},
    )
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    [error] = response.json()["errors"]
    assert error["extensions"] == {"code": "SERVICE_UNAVAILABLE", "retryAfterSeconds": 1}
    assert "conflicted" in error["message"] and calls == 3 + events.RETRY_ATTEMPTS


@postgres_only
async def test_a_real_deadlock_is_retried_and_both_units_commit(api: Api) -> None:
    one, two = await api.person(), await api.person()
    first_locks = asyncio.Barrier(2)
    runs: list[str] = []

    def unit(name: str, first: str, second: str) -> Any:
        async def work() -> str:
            runs.append(name)
            async with events.transaction(None) as tx:
                lock = "SELECT id FROM users WHERE id = $1 FOR UPDATE"
                await tx.conn.execute_query(lock, [int(first)])
                if runs.count(name) == 1:
                    await first_locks.wait()  # each holds one row and wants the other's
                await tx.conn.execute_query(lock, [int(second)])
                await users.User.filter(id=int(first)).using_db(tx.conn).update(name=f"by {name}")
            return name

        return work

    done = await asyncio.wait_for(
        asyncio.gather(
            events.retrying(unit("a", one.id, two.id)), events.retrying(unit("b", two.id, one.id))
        ),
        30,
    )
    assert done == ["a", "b"]
    assert sorted(runs) in (["a", "a", "b"], ["a", "b", "b"]), runs  # the deadlock's victim ran again


async def test_retry_of_a_unit_does_not_swallow_other_errors(api: Api) -> None:
    runs = 0

    async def unit() -> None:
        nonlocal runs
        runs += 1
        raise IntegrityError("duplicate key value violates unique constraint")

    with pytest.raises(IntegrityError):
        await events.retrying(unit)
    assert runs == 1
