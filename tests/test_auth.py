"""Authentication (JWT bearer tokens, users from claims) and authorization (who sees what)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt

import httpx
import jwt
import pytest

from pulseboard.app import create_app
from pulseboard.auth import Verifier, mint_token
from pulseboard.errors import AppError
from pulseboard.models import Role
from tests.helpers import Api, Person, code

VIEWER = "{ viewer { id email name role } }"
FAR_FUTURE = 4_102_444_800  # 2100-01-01


def signed(api: Api, **claims: object) -> str:
    return jwt.encode(claims, api.settings.jwt_secret, algorithm="HS256")


async def raw(api: Api, authorization: str, query: str = VIEWER) -> httpx.Response:
    return await api.http.post("/graphql", json={"query": query}, headers={"authorization": authorization})


def unauthenticated(body: dict) -> dict:
    assert body["data"] is None, body
    error = body["errors"][0]
    assert code(error) == "UNAUTHENTICATED", error
    return error


# --- authentication ---------------------------------------------------------------------------


async def test_no_token_is_unauthenticated_on_query_and_mutation(api: Api) -> None:
    error = unauthenticated(await api.post(None, VIEWER))
    assert error["message"] == "Authentication required."
    unauthenticated(await api.post(None, "mutation { markAllNotificationsRead }"))
    unauthenticated(await api.post(None, 'mutation { createProject(input: {name: "P"}) { id } }'))
    # Nothing was created anonymously.
    admin = await api.person(Role.ADMIN)
    assert (await api.ok(admin, "{ projects { totalCount } }"))["projects"]["totalCount"] == 0


@pytest.mark.parametrize("header", ["Token abc.def.ghi", "Bearer ", "Bearer", "Basic dXNlcjpwYXNz"])
async def test_malformed_authorization_header(api: Api, header: str) -> None:
    response = await raw(api, header)
    assert response.status_code == 200
    error = unauthenticated(response.json())
    assert error["message"] == "Authorization must be 'Bearer <token>'."


async def test_token_signed_with_another_secret(api: Api) -> None:
    forged = mint_token(
        "another-secret-" + "y" * 40,
        sub="mallory@example.test",
        email="mallory@example.test",
        name="mallory",
        role=Role.ADMIN,
        ttl=dt.timedelta(hours=1),
    )
    error = unauthenticated(await api.post(forged, VIEWER))
    assert error["message"] == "Invalid token."


async def test_expired_token(api: Api) -> None:
    expired = api.token("late@example.test", ttl=dt.timedelta(minutes=-5))
    error = unauthenticated(await api.post(expired, VIEWER))
    assert error["message"] == "Token expired."


async def test_a_token_is_verified_once_while_remembered(api: Api) -> None:
    verifier = Verifier(secret=api.settings.jwt_secret)
    token = api.token("often@example.test")
    first, second = await verifier.verify(token), await verifier.verify(token)
    assert first == second and first.sub == "often@example.test"
    assert verifier.verifications == 1
    await verifier.verify(api.token("other@example.test"))
    assert verifier.verifications == 2


async def test_a_remembered_token_is_refused_once_it_expires(api: Api) -> None:
    verifier = Verifier(secret=api.settings.jwt_secret)
    token = api.token("brief@example.test", ttl=dt.timedelta(seconds=1))
    await verifier.verify(token)
    await asyncio.sleep(1.2)
    with pytest.raises(AppError) as refused:
        await verifier.verify(token)
    assert refused.value.code.value == "UNAUTHENTICATED" and refused.value.message == "Token expired."


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        (None, "Invalid token."),  # not a JWT at all
        ({"email": "nosub@example.test", "exp": FAR_FUTURE}, "Invalid token."),
        ({"sub": "", "exp": FAR_FUTURE}, "Invalid token: bad subject."),
        ({"sub": "noexp@example.test"}, "Invalid token."),
        ({"sub": "root@example.test", "role": "ROOT", "exp": FAR_FUTURE}, "Invalid token: unknown role."),
    ],
    ids=["garbage", "no-sub", "empty-sub", "no-exp", "unknown-role"],
)
async def test_token_with_bad_claims(api: Api, claims: dict | None, message: str) -> None:
    token = "not-a-jwt" if claims is None else signed(api, **claims)
    error = unauthenticated(await api.post(token, VIEWER))
    assert error["message"] == message


async def test_error_message_never_echoes_the_token(api: Api) -> None:
    forged = mint_token(
        "another-secret-" + "z" * 40,
        sub="echo@example.test",
        email="echo@example.test",
        name="echo",
        role=Role.MEMBER,
        ttl=dt.timedelta(hours=1),
    )
    expired = api.token("echo@example.test", ttl=dt.timedelta(seconds=-1))
    unknown_role = signed(api, sub="echo@example.test", role="ROOT", exp=FAR_FUTURE)
    for token in (forged, expired, unknown_role, "opaque-token-value-1234"):
        for header in (f"Bearer {token}", f"Token {token}"):
            response = await raw(api, header)
            unauthenticated(response.json())
            assert token not in response.text
            # Not even a recognisable fragment of it (a JWT's header part is shared by all tokens).
            assert token.split(".")[-1][:12] not in response.text


async def test_user_is_upserted_from_claims(api: Api) -> None:
    def token(email: str, name: str, role: Role) -> str:
        return mint_token(
            api.settings.jwt_secret,
            sub="auth0|42",
            email=email,
            name=name,
            role=role,
            ttl=dt.timedelta(hours=1),
        )

    first = (await api.ok(token("ada@example.test", "Ada Lovelace", Role.AGENT), VIEWER))["viewer"]
    assert first == {"id": first["id"], "email": "ada@example.test", "name": "Ada Lovelace", "role": "AGENT"}
    assert (await api.ok(token("ada@example.test", "Ada Lovelace", Role.AGENT), VIEWER))["viewer"] == first
    # Same subject, new claims: the same user, brought up to date.
    admin_token = token("countess@example.test", "Ada King", Role.ADMIN)
    after = (await api.ok(admin_token, VIEWER))["viewer"]
    assert after == {"id": first["id"], "email": "countess@example.test", "name": "Ada King", "role": "ADMIN"}
    # The new role takes effect at once: an admin sees every project.
    other = await api.person()
    await api.ok(other, 'mutation { createProject(input: {name: "Theirs"}) { id } }')
    assert (await api.ok(admin_token, "{ projects { totalCount } }"))["projects"]["totalCount"] == 1


# --- introspection ----------------------------------------------------------------------------

INTROSPECTION = "{ __schema { queryType { name } } }"


async def test_introspection_without_token_in_development(api: Api) -> None:
    assert not api.settings.production
    data = await api.ok(None, INTROSPECTION)
    assert data == {"__schema": {"queryType": {"name": "Query"}}}


async def test_introspection_refused_when_disabled(api: Api) -> None:
    settings = dataclasses.replace(api.settings, introspection=False)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            other = Api(http, settings)
            member = await other.person()
            for who in (None, member):
                body = await other.post(who, INTROSPECTION)
                assert body.get("data") is None
                assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
                assert "introspection" in body["errors"][0]["message"].lower()
            # Ordinary queries still work.
            assert (await other.ok(member, "{ viewer { id } }"))["viewer"]["id"] == member.id


# --- authorization: projects and tasks --------------------------------------------------------

CREATE_PROJECT = "mutation($name: String!) { createProject(input: {name: $name}) { id } }"
CREATE_TASK = """
mutation($projectId: ID!, $title: String!) {
  createTask(input: {projectId: $projectId, title: $title}) { id version }
}"""


async def project_with_task(api: Api, owner: Person, name: str) -> tuple[str, str]:
    project = (await api.ok(owner, CREATE_PROJECT, name=name))["createProject"]["id"]
    task = (await api.ok(owner, CREATE_TASK, projectId=project, title=f"{name} task"))["createTask"]["id"]
    await api.ok(
        owner,
        'mutation($id: ID!) { addTaskComment(taskId: $id, body: "hello") { id } }',
        id=task,
    )
    return project, task


async def not_found(api: Api, who: Person, query: str, **variables: object) -> str:
    error = await api.error(who, query, **variables)
    assert code(error) == "NOT_FOUND", error
    return error["message"]


async def test_member_cannot_read_another_project(api: Api) -> None:
    alice, bob = await api.person(), await api.person()
    project_a, task_a = await project_with_task(api, alice, "A")
    project_b, task_b = await project_with_task(api, bob, "B")

    assert await not_found(api, alice, "query($id: ID!) { project(id: $id) { id } }", id=project_b) == (
        f"Project {project_b} not found."
    )
    await not_found(api, alice, "query($id: ID!) { tasks(projectId: $id) { totalCount } }", id=project_b)
    await not_found(api, alice, "query($id: ID!) { task(id: $id) { id } }", id=task_b)
    await not_found(api, alice, "query($id: ID!) { task(id: $id) { comments { totalCount } } }", id=task_b)

    # Lists and counts only ever hold A's rows.
    data = await api.ok(alice, "{ projects { totalCount edges { node { id } } } }")
    assert data["projects"]["totalCount"] == 1
    assert [e["node"]["id"] for e in data["projects"]["edges"]] == [project_a]
    data = await api.ok(
        alice,
        "query($p: ID!, $u: ID!) { all: tasks(projectId: $p) { totalCount edges { node { id } } }"
        " bobs: tasks(projectId: $p, assigneeId: $u) { totalCount } }",
        p=project_a,
        u=bob.id,
    )
    assert data["all"]["totalCount"] == 1
    assert [e["node"]["id"] for e in data["all"]["edges"]] == [task_a]
    assert data["bobs"]["totalCount"] == 0

    # An admin sees both.
    admin = await api.person(Role.ADMIN)
    data = await api.ok(
        admin,
        "query($p: ID!, $t: ID!) { projects { totalCount } tasks(projectId: $p) { totalCount }"
        " task(id: $t) { id } }",
        p=project_b,
        t=task_b,
    )
    assert data == {"projects": {"totalCount": 2}, "tasks": {"totalCount": 1}, "task": {"id": task_b}}


async def test_member_cannot_change_another_projects_tasks(api: Api) -> None:
    alice, bob = await api.person(), await api.person()
    await project_with_task(api, alice, "A")
    project_b, task_b = await project_with_task(api, bob, "B")

    mutations = [
        ('mutation($id: ID!) { updateTask(id: $id, input: {title: "x"}) { id } }', {"id": task_b}),
        ("mutation($id: ID!) { moveTask(id: $id, status: DONE, position: 0) { id } }", {"id": task_b}),
        (
            "mutation($id: ID!, $u: ID) { assignTask(id: $id, assigneeId: $u) { id } }",
            {"id": task_b, "u": alice.id},
        ),
        ("mutation($id: ID!) { completeTask(id: $id) { id } }", {"id": task_b}),
        ("mutation($id: ID!) { deleteTask(id: $id) { id } }", {"id": task_b}),
        ('mutation($id: ID!) { addTaskComment(taskId: $id, body: "hi") { id } }', {"id": task_b}),
        (CREATE_TASK, {"projectId": project_b, "title": "sneaky"}),
        (
            "mutation($p: ID!, $u: ID!) { addProjectMember(projectId: $p, userId: $u) { id } }",
            {"p": project_b, "u": alice.id},
        ),
    ]
    for query, variables in mutations:
        await not_found(api, alice, query, **variables)

    # Bob's project is exactly as it was.
    data = await api.ok(
        bob,
        "query($p: ID!, $t: ID!) { project(id: $p) { members { id } }"
        " tasks(projectId: $p) { totalCount }"
        " task(id: $t) { title status version assignee { id } comments { totalCount } } }",
        p=project_b,
        t=task_b,
    )
    assert data["project"]["members"] == [{"id": bob.id}]
    assert data["tasks"]["totalCount"] == 1
    assert data["task"] == {
        "title": "B task",
        "status": "TODO",
        "version": 1,
        "assignee": None,
        "comments": {"totalCount": 1},
    }


async def test_not_found_does_not_reveal_whether_the_id_exists(api: Api) -> None:
    alice, bob = await api.person(), await api.person()
    project_b, task_b = await project_with_task(api, bob, "B")
    missing = str(int(task_b) + 1000)
    missing_project = str(int(project_b) + 1000)

    cases = [
        ("query($id: ID!) { task(id: $id) { id } }", "Task"),
        ("mutation($id: ID!) { completeTask(id: $id) { id } }", "Task"),
        ('mutation($id: ID!) { addTaskComment(taskId: $id, body: "x") { id } }', "Task"),
    ]
    for query, kind in cases:
        hidden = await api.error(alice, query, id=task_b)
        absent = await api.error(alice, query, id=missing)
        assert hidden["message"] == f"{kind} {task_b} not found."
        assert absent["message"] == f"{kind} {missing} not found."
        assert hidden["extensions"] == absent["extensions"] == {"code": "NOT_FOUND"}

    query = "query($id: ID!) { project(id: $id) { id } }"
    hidden = await api.error(alice, query, id=project_b)
    absent = await api.error(alice, query, id=missing_project)
    assert hidden["message"] == f"Project {project_b} not found."
    assert absent["message"] == f"Project {missing_project} not found."
    assert hidden["extensions"] == absent["extensions"]


# --- authorization: tickets -------------------------------------------------------------------


async def support_desk(api: Api) -> dict[str, Person | str]:
    """Two teams with a queue each; a member files a ticket in team one's queue."""
    admin = await api.person(Role.ADMIN)
    agent, other_agent = await api.person(Role.AGENT), await api.person(Role.AGENT)
    requester, outsider = await api.person(), await api.person()
    queues = []
    for name, member in (("One", agent), ("Two", other_agent)):
        team = (
            await api.ok(admin, "mutation($n: String!) { createTeam(input: {name: $n}) { id } }", n=name)
        )["createTeam"]["id"]
        await api.ok(
            admin,
            "mutation($t: ID!, $u: ID!) { addTeamMember(teamId: $t, userId: $u) { id } }",
            t=team,
            u=member.id,
        )
        queue = await api.ok(
            admin,
            "mutation($t: ID!, $n: String!) { createQueue(input: {teamId: $t, name: $n,"
            " slaFirstResponseMinutes: 60, slaResolutionMinutes: 480}) { id } }",
            t=team,
            n=name,
        )
        queues.append(queue["createQueue"]["id"])
    ticket = await api.ok(
        requester,
        'mutation($q: ID!) { createTicket(input: {queueId: $q, title: "Printer on fire"}) { id } }',
        q=queues[0],
    )
    return {
        "admin": admin,
        "agent": agent,
        "other_agent": other_agent,
        "requester": requester,
        "outsider": outsider,
        "ticket": ticket["createTicket"]["id"],
    }


async def test_ticket_visibility(api: Api) -> None:
    desk = await support_desk(api)
    ticket = desk["ticket"]
    query = "query($id: ID!) { ticket(id: $id) { id } tickets { totalCount } }"
    for name in ("requester", "agent", "admin"):
        data = await api.ok(desk[name], query, id=ticket)
        assert data == {"ticket": {"id": ticket}, "tickets": {"totalCount": 1}}, name
    for name in ("outsider", "other_agent"):
        error = await api.error(desk[name], "query($id: ID!) { ticket(id: $id) { id } }", id=ticket)
        assert code(error) == "NOT_FOUND", name
        assert error["message"] == f"Ticket {ticket} not found."
        assert (await api.ok(desk[name], "{ tickets { totalCount } }"))["tickets"]["totalCount"] == 0


async def test_ticket_changes_by_outsiders_and_requesters(api: Api) -> None:
    desk = await support_desk(api)
    ticket = desk["ticket"]
    status = "mutation($id: ID!) { setTicketStatus(id: $id, status: CLOSED) { status } }"
    comment = 'mutation($id: ID!) { addTicketComment(ticketId: $id, body: "me too") { id } }'
    for name in ("outsider", "other_agent"):
        assert code(await api.error(desk[name], status, id=ticket)) == "NOT_FOUND"
        assert code(await api.error(desk[name], comment, id=ticket)) == "NOT_FOUND"
    # The requester sees the ticket and may comment, but only its agents change it.
    assert code(await api.error(desk["requester"], status, id=ticket)) == "FORBIDDEN"
    await api.ok(desk["requester"], comment, id=ticket)
    assert (await api.ok(desk["agent"], status, id=ticket))["setTicketStatus"]["status"] == "CLOSED"
    data = await api.ok(
        desk["admin"], "query($id: ID!) { ticket(id: $id) { version comments { totalCount } } }", id=ticket
    )
    assert data["ticket"] == {"version": 2, "comments": {"totalCount": 1}}
