"""Who may add whom to a project, who manages it, what people see of each other, and who may be
assigned: each rule with the red-team's reproduction of the attack it stops."""

from __future__ import annotations

import asyncio

from pulseboard.models import Event, Notification, Project, ProjectMember, ProjectRole, Role, User
from pulseboard.resolvers import access
from pulseboard.schema.subscription import _task_event
from tests.helpers import Api, Person, code, count_queries
from tests.live import LiveServer, ws
from tests.test_cohorts import _compare
from tests.test_tickets import make_desk

CREATE_PROJECT = "mutation($n: String!) { createProject(input: {name: $n}) { id } }"
ADD = """mutation($p: ID!, $u: ID!, $r: ProjectRole) {
  addProjectMember(projectId: $p, userId: $u, role: $r) { id memberships { role user { id } } } }"""
ADD_DEFAULT = "mutation($p: ID!, $u: ID!) { addProjectMember(projectId: $p, userId: $u) { id } }"
REMOVE = "mutation($p: ID!, $u: ID!) { removeProjectMember(projectId: $p, userId: $u) { id } }"
SET_ROLE = """mutation($p: ID!, $u: ID!, $r: ProjectRole!) {
  setProjectMemberRole(projectId: $p, userId: $u, role: $r) { id memberships { role user { id } } } }"""
MEMBERSHIPS = "query($p: ID!) { project(id: $p) { memberships { role user { id } } } }"
PEOPLE = """query($p: ID!) { project(id: $p) {
  createdBy { id name email role } members { id name email role }
  memberships { role user { id name email role } } } }"""
CREATE_TASK = "mutation($i: CreateTaskInput!) { createTask(input: $i) { id assignee { id } } }"
ASSIGN_TASK = "mutation($id: ID!, $a: ID) { assignTask(id: $id, assigneeId: $a) { id assignee { id } } }"
CREATE_TEAM = "mutation($n: String!) { createTeam(input: {name: $n}) { id } }"
ADD_TO_TEAM = "mutation($t: ID!, $u: ID!) { addTeamMember(teamId: $t, userId: $u) { id } }"


async def project(api: Api, owner: Person, name: str = "Board") -> str:
    return (await api.ok(owner, CREATE_PROJECT, n=name))["createProject"]["id"]  # type: ignore[no-any-return]


async def roles(api: Api, who: Person, project_id: str) -> dict[str, str]:
    data = await api.ok(who, MEMBERSHIPS, p=project_id)
    return {m["user"]["id"]: m["role"] for m in data["project"]["memberships"]}


async def team_of(api: Api, admin: Person, *people: Person) -> str:
    team = (await api.ok(admin, CREATE_TEAM, n=f"Team {people[0].id}"))["createTeam"]["id"]
    for person in people:
        await api.ok(admin, ADD_TO_TEAM, t=team, u=person.id)
    return team  # type: ignore[no-any-return]


async def board(api: Api, owner: Person, *members: Person) -> str:
    """A project of `owner`, with `members` added by an admin (who may add anyone)."""
    project_id = await project(api, owner)
    admin = await api.person(Role.ADMIN)
    for member in members:
        await api.ok(admin, ADD_DEFAULT, p=project_id, u=member.id)
    return project_id


# 1. Project roles.


async def test_the_creator_is_the_owner_and_memberships_show_roles(api: Api) -> None:
    alice, bob = await api.person(), await api.person()
    project_id = await board(api, alice, bob)
    assert await roles(api, alice, project_id) == {alice.id: "OWNER", bob.id: "MEMBER"}
    assert await roles(api, bob, project_id) == {alice.id: "OWNER", bob.id: "MEMBER"}
    # `members` still lists the same people, in the same order.
    data = await api.ok(bob, PEOPLE, p=project_id)
    assert [m["id"] for m in data["project"]["members"]] == [alice.id, bob.id]


async def test_a_member_cannot_add_anyone(api: Api) -> None:
    alice, bob, carol = await api.person(), await api.person(), await api.person()
    project_id = await board(api, alice, bob)
    await board(api, bob, carol)  # bob shares a project with carol: still not his to add here
    for user in (carol.id, bob.id, "999999"):
        err = await api.error(bob, ADD, p=project_id, u=user)
        assert code(err) == "FORBIDDEN", user
    assert await roles(api, alice, project_id) == {alice.id: "OWNER", bob.id: "MEMBER"}


async def test_a_non_member_gets_not_found_for_every_membership_change(api: Api) -> None:
    alice, mallory = await api.person(), await api.person()
    project_id = await project(api, alice)
    for query, variables in (
        (ADD, {"u": mallory.id}),
        (REMOVE, {"u": alice.id}),
        (REMOVE, {"u": mallory.id}),
        (SET_ROLE, {"u": mallory.id, "r": "OWNER"}),
    ):
        err = await api.error(mallory, query, p=project_id, **variables)
        assert code(err) == "NOT_FOUND", (query, variables)
        assert err["message"] == f"Project {project_id} not found."
    assert await roles(api, alice, project_id) == {alice.id: "OWNER"}


async def test_a_member_cannot_remove_the_creator_or_anyone_else(api: Api) -> None:
    """The attack: any member removed any other, the creator included."""
    alice, bob, carol = await api.person(), await api.person(), await api.person()
    project_id = await board(api, alice, bob, carol)
    for victim in (alice, carol):
        err = await api.error(bob, REMOVE, p=project_id, u=victim.id)
        assert code(err) == "FORBIDDEN"
    assert await roles(api, alice, project_id) == {alice.id: "OWNER", bob.id: "MEMBER", carol.id: "MEMBER"}
    assert not await Event.filter(type="MEMBER_REMOVED").exists()


async def test_a_member_cannot_change_roles_or_promote_themselves(api: Api) -> None:
    alice, bob, carol = await api.person(), await api.person(), await api.person()
    project_id = await board(api, alice, bob, carol)
    for user, role in ((bob.id, "OWNER"), (carol.id, "OWNER"), (alice.id, "MEMBER")):
        err = await api.error(bob, SET_ROLE, p=project_id, u=user, r=role)
        assert code(err) == "FORBIDDEN", (user, role)
    assert await roles(api, alice, project_id) == {alice.id: "OWNER", bob.id: "MEMBER", carol.id: "MEMBER"}


async def test_an_owner_removes_members_and_the_removal_is_an_event(api: Api) -> None:
    alice, bob = await api.person(), await api.person()
    project_id = await board(api, alice, bob)
    await api.ok(alice, REMOVE, p=project_id, u=bob.id)
    assert await roles(api, alice, project_id) == {alice.id: "OWNER"}
    assert code(await api.error(bob, MEMBERSHIPS, p=project_id)) == "NOT_FOUND"
    events = await Event.filter(topic=f"project:{project_id}", type="MEMBER_REMOVED")
    assert [e.payload for e in events] == [{"userId": int(bob.id)}]
    # Removing someone who is not a member: NOT_FOUND, as for an id that names nobody.
    for user in (bob.id, "999999", "abc"):
        err = await api.error(alice, REMOVE, p=project_id, u=user)
        assert code(err) == "NOT_FOUND", user
        assert err["message"] == f"User {user} not found."


async def test_any_member_may_leave(api: Api) -> None:
    alice, bob = await api.person(), await api.person()
    project_id = await board(api, alice, bob)
    await api.ok(bob, REMOVE, p=project_id, u=bob.id)
    assert await roles(api, alice, project_id) == {alice.id: "OWNER"}
    assert await Event.filter(topic=f"project:{project_id}", type="MEMBER_REMOVED").count() == 1


async def test_owners_change_roles_and_a_project_keeps_an_owner(api: Api) -> None:
    alice, bob = await api.person(), await api.person()
    project_id = await board(api, alice, bob)
    last_owner = "A project must keep at least one owner: make another member an owner first."
    # The last owner can neither leave, be removed by an admin, nor be demoted.
    admin = await api.person(Role.ADMIN)
    for who, query, variables in (
        (alice, REMOVE, {"u": alice.id}),
        (alice, SET_ROLE, {"u": alice.id, "r": "MEMBER"}),
        (admin, REMOVE, {"u": alice.id}),
        (admin, SET_ROLE, {"u": alice.id, "r": "MEMBER"}),
    ):
        err = await api.error(who, query, p=project_id, **variables)
        assert code(err) == "BAD_USER_INPUT", (who, query)
        assert err["message"] == last_owner
    # With a second owner, the first may step down, and then leave.
    data = await api.ok(alice, SET_ROLE, p=project_id, u=bob.id, r="OWNER")
    assert {m["user"]["id"]: m["role"] for m in data["setProjectMemberRole"]["memberships"]} == {
        alice.id: "OWNER",
        bob.id: "OWNER",
    }
    await api.ok(alice, SET_ROLE, p=project_id, u=alice.id, r="MEMBER")
    assert await roles(api, bob, project_id) == {alice.id: "MEMBER", bob.id: "OWNER"}
    # Now alice is a plain member: she may not manage any more, but may leave.
    assert code(await api.error(alice, SET_ROLE, p=project_id, u=alice.id, r="OWNER")) == "FORBIDDEN"
    await api.ok(alice, REMOVE, p=project_id, u=alice.id)
    assert await roles(api, bob, project_id) == {bob.id: "OWNER"}
    # Setting a role on someone who is not a member: NOT_FOUND.
    err = await api.error(bob, SET_ROLE, p=project_id, u=alice.id, r="MEMBER")
    assert code(err) == "NOT_FOUND"


async def test_two_owners_removing_each_other_at_once_leave_one_owner(api: Api) -> None:
    alice, bob = await api.person(), await api.person()
    project_id = await project(api, alice)
    admin = await api.person(Role.ADMIN)
    await api.ok(admin, ADD, p=project_id, u=bob.id, r="OWNER")
    first, second = await asyncio.gather(
        api.post(alice, REMOVE, {"p": project_id, "u": bob.id}),
        api.post(bob, REMOVE, {"p": project_id, "u": alice.id}),
    )
    outcomes = sorted(bool(r.get("errors")) for r in (first, second))
    assert outcomes == [False, True], (first, second)
    failed = first if first.get("errors") else second
    assert code(failed["errors"][0]) in ("BAD_USER_INPUT", "NOT_FOUND", "FORBIDDEN")
    owners = await ProjectMember.filter(project_id=int(project_id), role=ProjectRole.OWNER).count()
    assert owners == 1


async def test_owners_and_admins_add_with_a_role(api: Api) -> None:
    alice, bob, carol = await api.person(), await api.person(), await api.person()
    admin = await api.person(Role.ADMIN)
    project_id = await project(api, alice)
    data = await api.ok(admin, ADD, p=project_id, u=bob.id, r="OWNER")
    assert {m["user"]["id"]: m["role"] for m in data["addProjectMember"]["memberships"]} == {
        alice.id: "OWNER",
        bob.id: "OWNER",
    }
    # bob, now an owner, may add carol once they share something; the default role is MEMBER.
    await team_of(api, admin, bob, carol)
    await api.ok(bob, ADD_DEFAULT, p=project_id, u=carol.id)
    # Adding again changes nothing, whatever role is asked for.
    await api.ok(bob, ADD, p=project_id, u=carol.id, r="OWNER")
    assert await roles(api, alice, project_id) == {alice.id: "OWNER", bob.id: "OWNER", carol.id: "MEMBER"}


# 2. Who may be added.


async def test_an_owner_cannot_add_arbitrary_user_ids(api: Api) -> None:
    """The attack: addProjectMember(userId: 1..n) added anyone, whose email then showed."""
    alice = await api.person()
    strangers = [await api.person() for _ in range(3)]
    admin = await api.person(Role.ADMIN)
    project_id = await project(api, alice)
    top = max(int(p.id) for p in (*strangers, admin))
    for user_id in range(1, top + 5):
        if str(user_id) == alice.id:
            continue
        err = await api.error(alice, ADD, p=project_id, u=str(user_id))
        # A stranger, an admin and an id of nobody: the same answer, word for word.
        assert code(err) == "NOT_FOUND", user_id
        assert err["message"] == f"User {user_id} not found."
        assert set(err["extensions"]) == {"code"}
    assert await roles(api, alice, project_id) == {alice.id: "OWNER"}


async def test_an_owner_adds_people_they_share_a_project_or_a_team_with(api: Api) -> None:
    alice, bob, carol, dave = [await api.person() for _ in range(4)]
    admin = await api.person(Role.ADMIN)
    project_id = await project(api, alice)
    await board(api, bob, alice)  # alice and bob share bob's project
    await team_of(api, admin, alice, carol)  # alice and carol share a team
    await api.ok(alice, ADD, p=project_id, u=bob.id)
    await api.ok(alice, ADD, p=project_id, u=carol.id)
    assert code(await api.error(alice, ADD, p=project_id, u=dave.id)) == "NOT_FOUND"
    assert await roles(api, alice, project_id) == {alice.id: "OWNER", bob.id: "MEMBER", carol.id: "MEMBER"}


async def test_an_admin_adds_anyone_and_is_not_a_member_until_added(api: Api) -> None:
    alice, stranger = await api.person(), await api.person()
    admin = await api.person(Role.ADMIN)
    project_id = await project(api, alice)
    await api.ok(admin, ADD, p=project_id, u=stranger.id)
    assert await roles(api, admin, project_id) == {alice.id: "OWNER", stranger.id: "MEMBER"}
    err = await api.error(admin, ADD, p=project_id, u="999999")
    assert code(err) == "NOT_FOUND"


# 3. What a user sees of others.


async def test_members_do_not_show_other_peoples_email_or_role(api: Api) -> None:
    """The attack: `members` gave every member's email, name and role."""
    alice, bob = await api.person(), await api.person()
    admin = await api.person(Role.ADMIN)
    project_id = await board(api, alice, bob, admin)
    data = (await api.ok(bob, PEOPLE, p=project_id))["project"]
    people = {m["id"]: m for m in data["members"]}
    name = alice.email.split("@")[0]
    assert people[alice.id] == {"id": alice.id, "name": name, "email": None, "role": None}
    assert people[admin.id]["email"] is None and people[admin.id]["role"] is None
    name = bob.email.split("@")[0]
    assert people[bob.id] == {"id": bob.id, "name": name, "email": bob.email, "role": "MEMBER"}
    assert data["createdBy"]["email"] is None
    assert {m["user"]["id"]: m["user"]["email"] for m in data["memberships"]} == {
        alice.id: None,
        bob.id: bob.email,
        admin.id: None,
    }
    # Admins see everyone's.
    data = (await api.ok(admin, PEOPLE, p=project_id))["project"]
    assert {m["id"]: (m["email"], m["role"]) for m in data["members"]} == {
        alice.id: (alice.email, "MEMBER"),
        bob.id: (bob.email, "MEMBER"),
        admin.id: (admin.email, "ADMIN"),
    }
    # And everyone their own.
    viewer = (await api.ok(bob, "{ viewer { id email role } }"))["viewer"]
    assert viewer == {"id": bob.id, "email": bob.email, "role": "MEMBER"}


async def test_other_peoples_email_is_hidden_wherever_a_user_is_reached(api: Api) -> None:
    alice, bob = await api.person(), await api.person()
    project_id = await board(api, alice, bob)
    task = (
        await api.ok(alice, CREATE_TASK, i={"projectId": project_id, "title": "T", "assigneeId": alice.id})
    )["createTask"]["id"]
    await api.ok(alice, 'mutation($t: ID!) { addTaskComment(taskId: $t, body: "hi") { id } }', t=task)
    query = """query($t: ID!) { task(id: $t) {
      assignee { email role } createdBy { email role }
      comments { edges { node { author { email role } } } } project { createdBy { email } } } }"""
    seen = (await api.ok(bob, query, t=task))["task"]
    hidden = {"email": None, "role": None}
    assert seen["assignee"] == hidden and seen["createdBy"] == hidden
    assert seen["comments"]["edges"][0]["node"]["author"] == hidden
    assert seen["project"]["createdBy"] == {"email": None}
    own = (await api.ok(alice, query, t=task))["task"]
    assert own["assignee"] == {"email": alice.email, "role": "MEMBER"}

    # Tickets: the requester and the agent see only their own.
    desk = await make_desk(api)
    ticket = (
        await api.ok(
            desk.requester,
            'mutation($q: ID!) { createTicket(input: {queueId: $q, title: "Help"}) { id } }',
            q=desk.queue,
        )
    )["createTicket"]["id"]
    await api.ok(
        desk.admin,
        "mutation($t: ID!, $a: ID) { assignTicket(id: $t, assigneeId: $a) { id } }",
        t=ticket,
        a=desk.agent.id,
    )
    query = "query($t: ID!) { ticket(id: $t) { requester { email } assignee { email } } }"
    assert (await api.ok(desk.agent, query, t=ticket))["ticket"] == {
        "requester": {"email": None},
        "assignee": {"email": desk.agent.email},
    }
    assert (await api.ok(desk.requester, query, t=ticket))["ticket"] == {
        "requester": {"email": desk.requester.email},
        "assignee": {"email": None},
    }


TASK_EVENTS = """subscription($p: ID!) { taskEvents(projectId: $p) {
  actor { id name email role } task { title assignee { email } } } }"""


TASK = 'mutation($p: ID!) { createTask(input: {projectId: $p, title: "x"}) { id } }'


async def test_subscribers_see_only_their_own_email_in_events(live: LiveServer) -> None:
    owner = live.token("owner@example.test")
    mia = live.token("mia@example.test")
    admin = live.token("boss@example.test", Role.ADMIN)
    mia_id = (await live.gql(mia, "{ viewer { id } }"))["viewer"]["id"]
    project_id = (await live.gql(owner, CREATE_PROJECT, n="Live"))["createProject"]["id"]
    await live.gql(admin, ADD_DEFAULT, p=project_id, u=mia_id)
    engine = live.app.state.engine  # type: ignore[union-attr]
    sockets = [ws(live, token) for token in (owner, mia, admin)]
    clients = [await s.__aenter__() for s in sockets]
    try:
        for client in clients:
            await client.subscribe("1", TASK_EVENTS, p=project_id)
            await client.send({"type": "ping"})
            assert await client.receive() == {"type": "pong"}
        for _ in range(100):
            if engine.cohorts.members == 3:
                break
            await asyncio.sleep(0.02)
        # The document selects email: one cohort per viewer.
        assert len(engine.cohorts) == 3
        await live.gql(owner, TASK, p=project_id)
        owner_sees, mia_sees, admin_sees = [(await c.next("1"))["taskEvents"]["actor"] for c in clients]
    finally:
        for s in sockets:
            await s.__aexit__(None, None, None)
    assert owner_sees["email"] == "owner@example.test" and owner_sees["role"] == "MEMBER"
    assert mia_sees == {"id": owner_sees["id"], "name": "owner", "email": None, "role": None}
    assert admin_sees["email"] == "owner@example.test" and admin_sees["role"] == "MEMBER"


async def test_cohort_delivery_of_private_fields_equals_per_subscriber_execution(api: Api) -> None:
    admin, alice, bob = await api.person(Role.ADMIN), await api.person(), await api.person()
    project_id = await board(api, alice, bob)
    task = (
        await api.ok(alice, CREATE_TASK, i={"projectId": project_id, "title": "T", "assigneeId": bob.id})
    )["createTask"]["id"]
    await api.ok(bob, ASSIGN_TASK, id=task, a=alice.id)
    documents = [
        "subscription($p: ID!) { taskEvents(projectId: $p) { actor { id email role } } }",
        "subscription($p: ID!) { taskEvents(projectId: $p) { task { assignee { name email } } } }",
        """subscription($p: ID!) { taskEvents(projectId: $p) { task { project {
          memberships { role user { id role } } members { email } createdBy { name } } } } }""",
        """subscription($p: ID!) { taskEvents(projectId: $p) { ...E } }
        fragment E on TaskEvent { actor { ...U } } fragment U on User { name email }""",
        "subscription($p: ID!) { taskEvents(projectId: $p) { actor { name } task { id } } }",
    ]
    compared = await _compare(
        api, documents, {"p": project_id}, [admin, alice, bob], f"project:{project_id}", _task_event
    )
    assert compared == len(documents) * 3 * 2


# 4. Assignment.


async def test_an_admin_who_is_not_a_member_cannot_be_assigned(api: Api) -> None:
    """The attack: any member assigned tasks to an admin (admins counted as members everywhere),
    which sent them phishing-shaped notifications."""
    alice, bob = await api.person(), await api.person()
    admin = await api.person(Role.ADMIN)
    project_id = await board(api, alice, bob)
    must = "The assignee must be a member of the project."
    err = await api.error(bob, CREATE_TASK, i={"projectId": project_id, "title": "T", "assigneeId": admin.id})
    assert (code(err), err["message"]) == ("BAD_USER_INPUT", must)
    task = (await api.ok(bob, CREATE_TASK, i={"projectId": project_id, "title": "T"}))["createTask"]["id"]
    for user in (admin.id, "999999", "abc"):  # an admin, nobody and no id alike
        err = await api.error(bob, ASSIGN_TASK, id=task, a=user)
        assert (code(err), err["message"]) == ("BAD_USER_INPUT", must), user
    assert not await Notification.filter(user_id=int(admin.id)).exists()
    # Once added, the admin is assignable like anyone else.
    await api.ok(admin, ADD_DEFAULT, p=project_id, u=admin.id)
    assigned = (await api.ok(bob, ASSIGN_TASK, id=task, a=admin.id))["assignTask"]
    assert assigned["assignee"] == {"id": admin.id}
    assert await Notification.filter(user_id=int(admin.id)).count() == 1


async def test_a_removed_member_can_no_longer_be_assigned(api: Api) -> None:
    alice, bob = await api.person(), await api.person()
    project_id = await board(api, alice, bob)
    task = (await api.ok(alice, CREATE_TASK, i={"projectId": project_id, "title": "T"}))["createTask"]["id"]
    await api.ok(alice, ASSIGN_TASK, id=task, a=bob.id)
    await api.ok(bob, REMOVE, p=project_id, u=bob.id)
    err = await api.error(alice, ASSIGN_TASK, id=task, a=bob.id)
    assert code(err) == "BAD_USER_INPUT"


async def test_subscriptions_authorized_at_once_share_statements_and_each_gets_its_answer(api: Api) -> None:
    """Subscribing sockets are authorized together (one batch of statements): a
    member, an admin, a non-member and an unknown project in one batch each get their own answer."""
    owner = await api.person()
    other = await api.person()
    admin = await api.person(Role.ADMIN)
    first = (await api.ok(owner, CREATE_PROJECT, n="First"))["createProject"]["id"]
    second = (await api.ok(other, CREATE_PROJECT, n="Second"))["createProject"]["id"]
    viewers = {p.id: await User.get(id=int(p.id)) for p in (owner, other, admin)}
    asked = [
        (owner, first),  # a member
        (owner, second),  # not a member
        (other, second),
        (admin, first),  # an admin sees every project
        (admin, "99999"),  # no such project
        (other, first),
    ]
    batches = access._seen.batches
    with count_queries() as statements:
        answers = await asyncio.gather(
            *(access.subscribed_project(viewers[who.id], pid) for who, pid in asked), return_exceptions=True
        )
    assert access._seen.batches == batches + 1
    assert len(statements) == 2, statements  # the projects, and the memberships of the members
    found = [str(a.id) if isinstance(a, Project) else a.code.value for a in answers]
    assert found == [first, "NOT_FOUND", second, first, "NOT_FOUND", "NOT_FOUND"]
