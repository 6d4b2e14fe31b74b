"""Where a user's role comes from (the newest token, or the server), how it is changed, and that a
change takes effect at once: cached viewers are dropped and live sockets closed with 4403."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import jwt
import pytest

from pulseboard.models import Role
from pulseboard.resolvers import users
from pulseboard.settings import Settings, SettingsError, from_env
from tests.conftest import BROADCAST_URL, ON_POSTGRES
from tests.helpers import Api, code, serving
from tests.live import LiveServer, listening, serve, worker_processes, ws

VIEWER = "{ viewer { id email role } }"
CREATE_TEAM = "mutation($n: String!) { createTeam(input: {name: $n}) { id } }"
SET_ROLE = "mutation($u: ID!, $r: Role!) { setUserRole(userId: $u, role: $r) { id role } }"
PROJECT = "mutation($n: String!) { createProject(input: {name: $n}) { id } }"
CREATE_TASK = "mutation($p: ID!, $t: String!) { createTask(input: {projectId: $p, title: $t}) { id } }"
TASK_EVENTS = "subscription($p: ID!) { taskEvents(projectId: $p) { cursor task { title } } }"


def token_at(settings: Settings, email: str, role: Role, issued: dt.datetime | None) -> str:
    """A token as the identity provider would issue it at `issued` (None: without `iat`)."""
    now = dt.datetime.now(dt.UTC)
    payload: dict[str, object] = {
        "sub": email,
        "email": email,
        "name": email.split("@")[0],
        "role": role.value,
        "exp": now + dt.timedelta(hours=1),
    }
    if issued is not None:
        payload["iat"] = issued
    return jwt.encode(payload, settings.jwt_secret, algorithm="HS256")


def ago(seconds: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds)


async def role_of(api: Api, token: str) -> str:
    return (await api.ok(token, VIEWER))["viewer"]["role"]  # type: ignore[no-any-return]


# --- the settings ---------------------------------------------------------------------------------


def test_role_source_is_token_or_server() -> None:
    assert Settings().role_source == "token"
    assert from_env({"PULSEBOARD_ROLE_SOURCE": "server", "PULSEBOARD_JWT_SECRET": "s" * 40}).role_source == (
        "server"
    )
    with pytest.raises(SettingsError, match="PULSEBOARD_ROLE_SOURCE must be token or server"):
        from_env({"PULSEBOARD_ROLE_SOURCE": "ldap", "PULSEBOARD_JWT_SECRET": "s" * 40})


# --- token mode: the newest token wins ------------------------------------------------------------


async def test_an_older_admin_token_does_not_restore_a_demoted_user(api: Api) -> None:
    email = "demoted@example.test"
    old_admin = token_at(api.settings, email, Role.ADMIN, ago(120))
    assert await role_of(api, old_admin) == "ADMIN"
    # The identity provider demotes them: their next token says MEMBER.
    member = token_at(api.settings, email, Role.MEMBER, ago(60))
    assert await role_of(api, member) == "MEMBER"
    # The old admin token still verifies, but it is older than what was stored: MEMBER it is.
    assert await role_of(api, old_admin) == "MEMBER"
    assert code(await api.error(old_admin, CREATE_TEAM, n="Nope")) == "FORBIDDEN"
    # A token without `iat` counts as older than any that has one.
    assert await role_of(api, token_at(api.settings, email, Role.ADMIN, None)) == "MEMBER"
    # A newer token is the identity provider's word again.
    newer_admin = token_at(api.settings, email, Role.ADMIN, ago(0))
    assert await role_of(api, newer_admin) == "ADMIN"
    assert (await api.ok(newer_admin, CREATE_TEAM, n="Yes"))["createTeam"]["id"]


async def test_an_older_token_changes_no_claims_at_all(api: Api) -> None:
    new = token_at(api.settings, "kim@example.test", Role.AGENT, ago(10))
    await role_of(api, new)
    old = jwt.encode(
        {
            "sub": "kim@example.test",
            "email": "old-address@example.test",
            "role": "ADMIN",
            "iat": ago(3600),
            "exp": ago(-3600),
        },
        api.settings.jwt_secret,
        algorithm="HS256",
    )
    viewer = (await api.ok(old, VIEWER))["viewer"]
    assert (viewer["email"], viewer["role"]) == ("kim@example.test", "AGENT")


async def test_set_user_role_is_refused_when_roles_come_from_tokens(api: Api) -> None:
    admin, member = await api.person(Role.ADMIN), await api.person()
    error = await api.error(admin, SET_ROLE, u=member.id, r="AGENT")
    assert code(error) == "FORBIDDEN" and "identity provider" in error["message"]
    assert await role_of(api, member.token) == "MEMBER"


async def test_a_newer_token_closes_the_old_roles_sockets(live: LiveServer) -> None:
    owner = live.token("owner@example.test")
    p = (await live.gql(owner, PROJECT, n="Not theirs"))["createProject"]["id"]
    email = "ex-admin@example.test"
    old_admin = token_at(live.settings, email, Role.ADMIN, ago(60))
    async with ws(live, old_admin) as client:
        await client.subscribe("1", TASK_EVENTS, p=p)  # an admin may watch every project
        await listening(live, f"project:{p}")
        await live.gql(owner, CREATE_TASK, p=p, t="seen")
        assert (await client.next("1"))["taskEvents"]["task"]["title"] == "seen"
        # A newer token, on any request, says MEMBER.
        member = token_at(live.settings, email, Role.MEMBER, ago(0))
        assert (await live.gql(member, VIEWER))["viewer"]["role"] == "MEMBER"
        assert await client.closed(within=1.0) == (4403, "Access changed")
    # The client reconnects with the token it had: it is a member now, not of this project.
    async with ws(live, old_admin) as client:
        await client.subscribe("1", TASK_EVENTS, p=p)
        message = await client.receive()
        assert message["type"] == "error" and message["payload"][0]["extensions"]["code"] == "NOT_FOUND"


# --- server mode: the server keeps roles ----------------------------------------------------------


@pytest.fixture
def server_settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, role_source="server")


@pytest.fixture
async def server_api(server_settings: Settings) -> AsyncIterator[Api]:
    async with serving(server_settings) as api:
        yield api


@pytest.fixture
async def server_live(server_settings: Settings) -> AsyncIterator[LiveServer]:
    async with serve(server_settings) as server:
        yield server


async def promote(user_id: str, role: Role = Role.ADMIN) -> None:
    """What the operator's `pulseboard role` command does, in this process."""
    await users.change_role(int(user_id), role, actor=None)


async def test_server_mode_ignores_the_tokens_role(server_api: Api) -> None:
    claims_admin = await server_api.person(Role.ADMIN)
    assert await role_of(server_api, claims_admin.token) == "MEMBER"
    assert code(await server_api.error(claims_admin, CREATE_TEAM, n="Nope")) == "FORBIDDEN"
    # Nor does a newer token with another role change it.
    newer = token_at(server_api.settings, claims_admin.email, Role.AGENT, ago(0))
    assert await role_of(server_api, newer) == "MEMBER"


async def test_an_admin_sets_a_role_and_it_takes_effect_at_once(server_api: Api) -> None:
    admin, member = await server_api.person(), await server_api.person()
    await promote(admin.id)
    assert await role_of(server_api, member.token) == "MEMBER"  # now cached by this worker
    data = await server_api.ok(admin, SET_ROLE, u=member.id, r="ADMIN")
    assert data["setUserRole"] == {"id": member.id, "role": "ADMIN"}
    # The cached MEMBER is not served any more: the very next request is an admin's.
    assert await role_of(server_api, member.token) == "ADMIN"
    assert (await server_api.ok(member, CREATE_TEAM, n="Theirs"))["createTeam"]["id"]
    await server_api.ok(admin, SET_ROLE, u=member.id, r="MEMBER")
    assert await role_of(server_api, member.token) == "MEMBER"
    assert code(await server_api.error(member, CREATE_TEAM, n="Again")) == "FORBIDDEN"
    # Setting the role a user has changes nothing and notifies nobody.
    watch = server_api.app.state.access
    before = watch.applied
    await server_api.ok(admin, SET_ROLE, u=member.id, r="MEMBER")
    assert watch.applied == before


async def test_only_admins_set_roles(server_api: Api) -> None:
    member, other = await server_api.person(), await server_api.person()
    for role in ("ADMIN", "AGENT"):
        assert code(await server_api.error(member, SET_ROLE, u=member.id, r=role)) == "FORBIDDEN"
        assert code(await server_api.error(member, SET_ROLE, u=other.id, r=role)) == "FORBIDDEN"
    assert code(await server_api.error(None, SET_ROLE, u=other.id, r="ADMIN")) == "UNAUTHENTICATED"
    assert await role_of(server_api, member.token) == "MEMBER"
    admin = await server_api.person()
    await promote(admin.id)
    for missing in ("999999", "nope"):
        assert code(await server_api.error(admin, SET_ROLE, u=missing, r="AGENT")) == "NOT_FOUND"


async def test_the_last_admin_cannot_demote_themselves(server_api: Api) -> None:
    ada, bob = await server_api.person(), await server_api.person()
    await promote(ada.id)
    error = await server_api.error(ada, SET_ROLE, u=ada.id, r="MEMBER")
    assert code(error) == "BAD_USER_INPUT" and error["extensions"]["field"] == "role"
    assert "last administrator" in error["message"]
    assert await role_of(server_api, ada.token) == "ADMIN"
    # With a second admin, either may step down, but not both.
    await server_api.ok(ada, SET_ROLE, u=bob.id, r="ADMIN")
    assert (await server_api.ok(ada, SET_ROLE, u=ada.id, r="AGENT"))["setUserRole"]["role"] == "AGENT"
    assert code(await server_api.error(bob, SET_ROLE, u=bob.id, r="MEMBER")) == "BAD_USER_INPUT"
    assert await role_of(server_api, ada.token) == "AGENT"
    assert await role_of(server_api, bob.token) == "ADMIN"


async def test_concurrent_demotions_leave_an_admin(server_api: Api) -> None:
    ada, bob = await server_api.person(), await server_api.person()
    await promote(ada.id)
    await promote(bob.id)
    results = await asyncio.gather(
        server_api.post(ada, SET_ROLE, {"u": ada.id, "r": "MEMBER"}),
        server_api.post(bob, SET_ROLE, {"u": bob.id, "r": "MEMBER"}),
    )
    assert sorted(bool(r.get("errors")) for r in results) == [False, True], results
    roles = {await role_of(server_api, p.token) for p in (ada, bob)}
    assert roles == {"ADMIN", "MEMBER"}


async def test_a_demoted_admins_socket_is_closed_and_reauthorized(server_live: LiveServer) -> None:
    live = server_live
    ada, bob = live.token("ada@example.test"), live.token("bob@example.test")
    ada_id = (await live.gql(ada, VIEWER))["viewer"]["id"]
    bob_id = (await live.gql(bob, VIEWER))["viewer"]["id"]
    await promote(ada_id)
    await promote(bob_id)
    p = (await live.gql(ada, PROJECT, n="Ada's"))["createProject"]["id"]
    async with ws(live, bob) as client, ws(live, ada) as bystander:
        await client.subscribe("1", TASK_EVENTS, p=p)
        await listening(live, f"project:{p}")
        await live.gql(ada, CREATE_TASK, p=p, t="seen")
        assert (await client.next("1"))["taskEvents"]["task"]["title"] == "seen"
        assert (await live.gql(bob, VIEWER))["viewer"]["role"] == "ADMIN"  # cached
        await live.gql(ada, SET_ROLE, u=bob_id, r="MEMBER")
        assert await client.closed(within=1.0) == (4403, "Access changed")
        assert (await live.gql(bob, VIEWER))["viewer"]["role"] == "MEMBER"
        # Only that user's sockets are closed.
        await bystander.send({"type": "ping"})
        assert await bystander.receive() == {"type": "pong"}
    async with ws(live, bob) as client:
        await client.subscribe("1", TASK_EVENTS, p=p)
        message = await client.receive()
        assert message["type"] == "error" and message["payload"][0]["extensions"]["code"] == "NOT_FOUND"


# --- the command line ----------------------------------------------------------------------------


async def cli(settings: Settings, *args: str, cwd: Path, **env: str) -> tuple[int, str, str]:
    """`python -m pulseboard ARGS` on the test's database and broker (without blocking the loop)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PULSEBOARD_")}
    environ.update(
        PULSEBOARD_DATABASE_URL=settings.database_url,
        PULSEBOARD_BROADCAST_URL=settings.broadcast_url,
        PULSEBOARD_JWT_SECRET=settings.jwt_secret,
        PULSEBOARD_ROLE_SOURCE=settings.role_source,
        PULSEBOARD_LOG_LEVEL="WARNING",
        **env,
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pulseboard",
        *args,
        cwd=cwd,
        env=environ,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_the_role_command_reaches_a_running_server(server_live: LiveServer, tmp_path: Path) -> None:
    live = server_live
    kim = live.token("kim@example.test")
    kim_id = (await live.gql(kim, VIEWER))["viewer"]["id"]
    async with ws(live, kim) as client:
        status, out, err = await cli(
            live.settings, "role", "--email", "kim@example.test", "--role", "ADMIN", cwd=tmp_path
        )
        assert status == 0, err
        assert out.strip() == f"user {kim_id} (kim@example.test): MEMBER -> ADMIN"
        # Over Redis at once; over memory:// the server's sweep reads it from the log (1 s).
        assert await client.closed(within=2.0) == (4403, "Access changed")
    assert (await live.gql(kim, VIEWER))["viewer"]["role"] == "ADMIN"
    assert (await live.gql(kim, CREATE_TEAM, n="Kim's"))["createTeam"]["id"]
    status, out, _ = await cli(
        live.settings, "role", "--sub", "kim@example.test", "--role", "ADMIN", cwd=tmp_path
    )
    assert status == 0 and out.strip() == f"user {kim_id} (kim@example.test) is ADMIN already"


async def test_the_role_command_refuses_token_mode_and_unknown_users(
    settings: Settings, tmp_path: Path
) -> None:
    status, _, err = await cli(settings, "role", "--email", "a@example.test", "--role", "ADMIN", cwd=tmp_path)
    assert status != 0 and "identity provider" in err
    server = dataclasses.replace(settings, role_source="server")
    status, _, err = await cli(
        server, "role", "--email", "nobody@example.test", "--role", "ADMIN", cwd=tmp_path
    )
    assert status != 0 and "not found" in err
    status, _, err = await cli(server, "role", "--role", "ADMIN", cwd=tmp_path)
    assert status != 0 and "--email" in err


async def test_the_demo_admin_stays_admin_in_server_mode(server_settings: Settings, tmp_path: Path) -> None:
    status, _, err = await cli(server_settings, "seed", cwd=tmp_path)
    assert status == 0, err
    from pulseboard.seed import ADMIN, MEMBER

    async with serve(server_settings) as live:
        for demo in (ADMIN, MEMBER):
            token = live.token(demo.email, Role.ADMIN)  # the claim is ignored either way
            assert (await live.gql(token, VIEWER))["viewer"]["role"] == demo.role.value


# --- across workers (PostgreSQL + Redis) ---------------------------------------------------------

needs_workers = pytest.mark.skipif(
    not (ON_POSTGRES and BROADCAST_URL.startswith("redis")),
    reason="several workers need PostgreSQL and Redis (the suite's second pass)",
)


@pytest.fixture
def server_workers(server_settings: Settings) -> Iterator[tuple[LiveServer, LiveServer]]:
    with worker_processes(server_settings, 2, env={"PULSEBOARD_ROLE_SOURCE": "server"}) as (one, two):
        yield one, two


@pytest.fixture
def token_workers(settings: Settings) -> Iterator[tuple[LiveServer, LiveServer]]:
    with worker_processes(settings, 2) as (one, two):
        yield one, two


@needs_workers
async def test_set_user_role_on_one_worker_closes_sockets_and_caches_on_the_other(
    server_workers: tuple[LiveServer, LiveServer], tmp_path: Path
) -> None:
    one, two = server_workers
    ada, bob = one.token("ada@example.test"), one.token("bob@example.test")
    await one.gql(ada, VIEWER)
    bob_id = (await one.gql(bob, VIEWER))["viewer"]["id"]
    status, _, err = await cli(
        one.settings, "role", "--email", "ada@example.test", "--role", "ADMIN", cwd=tmp_path
    )
    assert status == 0, err
    await one.gql(ada, SET_ROLE, u=bob_id, r="ADMIN")
    p = (await one.gql(ada, PROJECT, n="Ada's"))["createProject"]["id"]
    assert (await two.gql(bob, VIEWER))["viewer"]["role"] == "ADMIN"  # cached by worker two
    async with ws(two, bob) as on_two, ws(one, bob) as on_one:
        for client in (on_two, on_one):
            await client.subscribe("1", TASK_EVENTS, p=p)
            await client.send({"type": "ping"})
            assert await client.receive() == {"type": "pong"}
        await asyncio.sleep(0.3)  # the subscribes reached Redis
        await one.gql(ada, CREATE_TASK, p=p, t="seen")
        for client in (on_two, on_one):
            assert (await client.next("1"))["taskEvents"]["task"]["title"] == "seen"
        await one.gql(ada, SET_ROLE, u=bob_id, r="MEMBER")
        for client in (on_two, on_one):
            assert await client.closed(within=1.0) == (4403, "Access changed")
    # Worker two dropped what it had cached before it closed the socket.
    assert (await two.gql(bob, VIEWER))["viewer"]["role"] == "MEMBER"
    async with ws(two, bob) as client:
        await client.subscribe("1", TASK_EVENTS, p=p)
        message = await client.receive()
        assert message["type"] == "error" and message["payload"][0]["extensions"]["code"] == "NOT_FOUND"
    # The command line reaches both workers through the broker too.
    async with ws(one, bob) as on_one, ws(two, bob) as on_two:
        status, _, err = await cli(
            one.settings, "role", "--email", "bob@example.test", "--role", "AGENT", cwd=tmp_path
        )
        assert status == 0, err
        for client in (on_one, on_two):
            assert await client.closed(within=1.0) == (4403, "Access changed")
    for worker in (one, two):
        assert (await worker.gql(bob, VIEWER))["viewer"]["role"] == "AGENT"


@needs_workers
async def test_a_newer_token_on_one_worker_closes_the_old_roles_socket_on_the_other(
    token_workers: tuple[LiveServer, LiveServer],
) -> None:
    one, two = token_workers
    owner = one.token("owner@example.test")
    p = (await one.gql(owner, PROJECT, n="Owner's"))["createProject"]["id"]
    old_admin = token_at(one.settings, "eve@example.test", Role.ADMIN, ago(60))
    assert (await two.gql(old_admin, VIEWER))["viewer"]["role"] == "ADMIN"
    async with ws(two, old_admin) as client:
        await client.subscribe("1", TASK_EVENTS, p=p)
        await client.send({"type": "ping"})
        assert await client.receive() == {"type": "pong"}
        newer = token_at(one.settings, "eve@example.test", Role.MEMBER, ago(0))
        assert (await one.gql(newer, VIEWER))["viewer"]["role"] == "MEMBER"
        assert await client.closed(within=1.0) == (4403, "Access changed")
    assert (await two.gql(old_admin, VIEWER))["viewer"]["role"] == "MEMBER"
