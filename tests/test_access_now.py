"""Access as of now: people removed from a project or demoted from agent stop receiving its data.

Notifications are made only for those who may see their task or ticket at that moment; stored
ones are listed, counted, read, deleted and replayed only while the viewer still may; replays of
ticket assignments skip tickets the viewer can no longer see; Ticket.comments checks by itself.
(A removed member's live taskEvents stream ending is tests/test_security.py's
test_removed_member_stops_receiving_at_once.)"""

from __future__ import annotations

import asyncio
from inspect import isawaitable

from graphql import execute, parse

from pulseboard.models import Event, Notification, Role, TeamMember, User
from pulseboard.resolvers.context import Context
from pulseboard.resolvers.loaders import Loaders
from pulseboard.schema.subscription import _assignment
from pulseboard.subscriptions.encoding import cursor, from_row
from tests.helpers import Api, Person, code
from tests.live import WS, LiveServer, ws

PROJECT = "mutation($n: String!) { createProject(input: {name: $n}) { id } }"
ADD = "mutation($p: ID!, $u: ID!) { addProjectMember(projectId: $p, userId: $u) { id } }"
REMOVE = "mutation($p: ID!, $u: ID!) { removeProjectMember(projectId: $p, userId: $u) { id } }"
CREATE_TASK = """mutation($p: ID!, $t: String!, $a: ID) {
  createTask(input: {projectId: $p, title: $t, assigneeId: $a}) { id }
}"""
TASK_COMMENT = "mutation($id: ID!, $b: String!) { addTaskComment(taskId: $id, body: $b) { id } }"
COMPLETE = "mutation($id: ID!) { completeTask(id: $id) { id } }"
INBOX = """
query($unreadOnly: Boolean! = false) {
  notifications(first: 100, unreadOnly: $unreadOnly) {
    totalCount unreadCount edges { node { id type title body taskId ticketId } }
  }
}"""
MARK = "mutation($ids: [ID!]!) { markNotificationsRead(ids: $ids) { id } }"
DELETE = "mutation($id: ID!) { deleteNotification(id: $id) { id } }"
TEAM = "mutation($n: String!) { createTeam(input: {name: $n}) { id } }"
JOIN = "mutation($t: ID!, $u: ID!) { addTeamMember(teamId: $t, userId: $u) { id } }"
QUEUE = "mutation($i: CreateQueueInput!) { createQueue(input: $i) { id } }"
TICKET = "mutation($q: ID!, $t: String!) { createTicket(input: {queueId: $q, title: $t}) { id } }"
ASSIGN_TICKET = "mutation($id: ID!, $u: ID) { assignTicket(id: $id, assigneeId: $u) { id } }"
TICKET_STATUS = "mutation($id: ID!, $s: TicketStatus!) { setTicketStatus(id: $id, status: $s) { id } }"
TICKET_COMMENT = "mutation($id: ID!, $b: String!) { addTicketComment(ticketId: $id, body: $b) { id } }"

NOTIFICATION_EVENTS = """subscription($after: String) {
  notifications(after: $after) { cursor type notifications { id type title body taskId ticketId } }
}"""
ASSIGNED = """subscription($u: ID!, $after: String) {
  ticketAssigned(userId: $u, after: $after) { cursor ticket { id title } }
}"""


# --- helpers ----------------------------------------------------------------------------------


async def project_with(api: Api, owner: Person, admin: Person, *members: Person, name: str = "Board") -> str:
    """A project of `owner`'s; an admin adds the members (an admin may add anyone)."""
    project = (await api.ok(owner, PROJECT, n=name))["createProject"]["id"]
    for member in members:
        await api.ok(admin, ADD, p=project, u=member.id)
    return project  # type: ignore[no-any-return]


async def task(api: Api, who: Person, project: str, title: str, assignee: Person | None = None) -> str:
    data = await api.ok(who, CREATE_TASK, p=project, t=title, a=assignee.id if assignee else None)
    return data["createTask"]["id"]  # type: ignore[no-any-return]


async def inbox(api: Api, who: Person, unread_only: bool = False) -> dict:
    return (await api.ok(who, INBOX, unreadOnly=unread_only))["notifications"]  # type: ignore[no-any-return]


def nodes(page: dict) -> list[dict]:
    return [edge["node"] for edge in page["edges"]]


async def desk(api: Api, admin: Person, name: str = "Support") -> tuple[str, str]:
    """A team and its queue: (team id, queue id)."""
    team = (await api.ok(admin, TEAM, n=name))["createTeam"]["id"]
    inp = {"teamId": team, "name": name, "slaFirstResponseMinutes": 60, "slaResolutionMinutes": 480}
    queue = (await api.ok(admin, QUEUE, i=inp))["createQueue"]["id"]
    return team, queue


async def demote(api: Api, agent: Person) -> Person:
    """The agent as a MEMBER: a newer token says so, and so does the users row."""
    await asyncio.sleep(1.1)  # a token's iat is in seconds: the newer one must be newer
    token = api.token(agent.email, Role.MEMBER)
    await api.ok(token, "{ viewer { id } }")
    await User.filter(id=int(agent.id)).update(role=Role.MEMBER)
    return Person(id=agent.id, email=agent.email, role=Role.MEMBER, token=token)


# --- rule 1: notifications are made only for those who may see their subject now -------------


async def test_a_removed_member_is_not_notified_of_later_comments_or_completions(api: Api) -> None:
    admin, alice, bob, carol = (
        await api.person(Role.ADMIN),
        await api.person(),
        await api.person(),
        await api.person(),
    )
    project = await project_with(api, alice, admin, bob, carol)
    # Bob made the task, so he would hear of its comments and completion; removing him does not
    # change who made it (his assignments, which removal ends, would not test this rule).
    work = await task(api, bob, project, "Merger plan", assignee=alice)  # alice is notified
    assert nodes(await inbox(api, bob)) == []
    seen = await Event.filter(topic=f"user:{bob.id}:notifications").count()

    await api.ok(alice, REMOVE, p=project, u=bob.id)
    await api.ok(carol, TASK_COMMENT, id=work, b="the secret price is 42")
    await api.ok(carol, COMPLETE, id=work)

    # Bob (still the task's creator) gets nothing, and the body is nowhere he could reach it.
    assert await Notification.filter(user_id=int(bob.id)).count() == 0
    assert not await Notification.filter(user_id=int(bob.id), body__contains="secret").exists()
    events = await Event.filter(topic=f"user:{bob.id}:notifications").order_by("seq")
    assert len(events) == seen
    assert not any("secret" in str(e.payload) for e in events)
    # The assignee, still a member, is told as before.
    assert [(n["type"], n["body"]) for n in nodes(await inbox(api, alice))] == [
        ("TASK_COMPLETED", ""),
        ("TASK_COMMENTED", "the secret price is 42"),
        ("TASK_ASSIGNED", ""),
    ]


async def test_admins_hear_of_tasks_only_where_they_are_members(api: Api) -> None:
    admin, bob = await api.person(Role.ADMIN), await api.person()
    project = (await api.ok(bob, PROJECT, n="Bob's"))["createProject"]["id"]
    work = await task(api, admin, project, "Set up by an admin", assignee=bob)  # admin: not a member
    await api.ok(bob, TASK_COMMENT, id=work, b="on it")
    await api.ok(bob, COMPLETE, id=work)
    assert nodes(await inbox(api, admin)) == []
    # Made a member, the admin is the creator who hears of the next completion.
    other = await task(api, admin, project, "Second", assignee=bob)
    await api.ok(admin, ADD, p=project, u=admin.id)
    await api.ok(bob, COMPLETE, id=other)
    assert [(n["type"], n["taskId"]) for n in nodes(await inbox(api, admin))] == [("TASK_COMPLETED", other)]


async def test_a_demoted_assignee_hears_no_more_of_the_ticket_and_the_requester_still_does(api: Api) -> None:
    admin, agent, requester = await api.person(Role.ADMIN), await api.person(Role.AGENT), await api.person()
    team, queue = await desk(api, admin)
    await api.ok(admin, JOIN, t=team, u=agent.id)
    ticket = (await api.ok(requester, TICKET, q=queue, t="Laptop stolen"))["createTicket"]["id"]
    await api.ok(admin, ASSIGN_TICKET, id=ticket, u=agent.id)
    assert [n["type"] for n in nodes(await inbox(api, agent))] == ["TICKET_ASSIGNED"]

    member = await demote(api, agent)
    await api.ok(admin, TICKET_STATUS, id=ticket, s="OPEN")
    await api.ok(admin, TICKET_COMMENT, id=ticket, b="serial number 1234")

    assert not await Notification.filter(user_id=int(agent.id), body__contains="serial").exists()
    assert await Notification.filter(user_id=int(agent.id)).count() == 1
    # Nor is the old one shown: the ticket is no longer theirs to see.
    assert (await inbox(api, member))["totalCount"] == 0
    assert [n["type"] for n in nodes(await inbox(api, requester))] == [
        "TICKET_COMMENTED",
        "TICKET_STATUS_CHANGED",
    ]


# --- stored notifications: shown only while their subject may be seen -------------------------


async def test_stored_notifications_about_a_project_disappear_after_removal(api: Api) -> None:
    admin, alice, bob = await api.person(Role.ADMIN), await api.person(), await api.person()
    left = await project_with(api, alice, admin, bob, name="Left")
    kept = await project_with(api, alice, admin, bob, name="Kept")
    gone = [await task(api, alice, left, f"Left {i}", assignee=bob) for i in range(2)]
    stays = await task(api, alice, kept, "Kept", assignee=bob)
    before = await inbox(api, bob)
    assert (before["totalCount"], before["unreadCount"]) == (3, 3)
    by_task = {n["taskId"]: n["id"] for n in nodes(before)}

    await api.ok(alice, REMOVE, p=left, u=bob.id)

    after = await inbox(api, bob)
    assert [n["taskId"] for n in nodes(after)] == [stays]
    assert (after["totalCount"], after["unreadCount"]) == (1, 1)
    assert [n["taskId"] for n in nodes(await inbox(api, bob, unread_only=True))] == [stays]
    # What cannot be listed cannot be marked or deleted either: NOT_FOUND, as another's.
    for query, variables in ((MARK, {"ids": [by_task[gone[0]]]}), (DELETE, {"id": by_task[gone[1]]})):
        error = await api.error(bob, query, **variables)
        assert code(error) == "NOT_FOUND"
    assert (await api.ok(bob, "mutation { markAllNotificationsRead }"))["markAllNotificationsRead"] == 1
    assert await Notification.filter(user_id=int(bob.id), read_at__isnull=True).count() == 2  # untouched

    # Access as of now works both ways: added back, bob sees them again.
    await api.ok(admin, ADD, p=left, u=bob.id)
    back = await inbox(api, bob)
    assert (back["totalCount"], back["unreadCount"]) == (3, 2)


async def test_ticket_notifications_follow_who_may_see_the_ticket(api: Api) -> None:
    admin, agent, requester = await api.person(Role.ADMIN), await api.person(Role.AGENT), await api.person()
    team, queue = await desk(api, admin)
    await api.ok(admin, JOIN, t=team, u=agent.id)
    ticket = (await api.ok(requester, TICKET, q=queue, t="No VPN"))["createTicket"]["id"]
    await api.ok(admin, ASSIGN_TICKET, id=ticket, u=agent.id)
    await api.ok(admin, TICKET_STATUS, id=ticket, s="OPEN")
    assert (await inbox(api, agent))["totalCount"] == 2
    assert (await inbox(api, requester))["totalCount"] == 1
    # Taken off the team (no mutation does this yet), the agent no longer sees the ticket.
    await TeamMember.filter(user_id=int(agent.id)).delete()
    assert (await inbox(api, agent))["totalCount"] == 0
    assert (await inbox(api, agent))["unreadCount"] == 0
    assert (await inbox(api, requester))["totalCount"] == 1


# --- Ticket.comments checks by itself ---------------------------------------------------------


COMMENTS_DOCUMENT = """
subscription($u: ID!) {
  ticketAssigned(userId: $u) { ticket { id comments { totalCount edges { node { body } } } } }
}"""


async def test_ticket_comments_are_refused_to_who_cannot_see_the_ticket(api: Api) -> None:
    admin, agent, requester = await api.person(Role.ADMIN), await api.person(Role.AGENT), await api.person()
    team, queue = await desk(api, admin)
    await api.ok(admin, JOIN, t=team, u=agent.id)
    elsewhere, _ = await desk(api, admin, "Elsewhere")
    outsider_agent = await api.person(Role.AGENT)
    await api.ok(admin, JOIN, t=elsewhere, u=outsider_agent.id)
    stranger = await api.person()
    ticket = (await api.ok(requester, TICKET, q=queue, t="Broken screen"))["createTicket"]["id"]
    await api.ok(agent, TICKET_COMMENT, id=ticket, b="ordered a new one")
    await api.ok(admin, ASSIGN_TICKET, id=ticket, u=agent.id)
    [event] = await Event.filter(topic=f"user:{agent.id}:tickets")
    schema = api.app.state.planner.schema

    async def comments_as(who: Person) -> dict:
        """The ticket of the assignment event, as `who` would have its comments rendered."""
        result = execute(
            schema,
            parse(COMMENTS_DOCUMENT),
            root_value=_assignment(from_row(event)),
            context_value=Context(api.settings, viewer=await User.get(id=int(who.id)), loaders=Loaders()),
            variable_values={"u": agent.id},
        )
        done = await result if isawaitable(result) else result
        return {"data": done.data, "errors": [e.formatted for e in done.errors or []]}

    # The requester sees every comment (there are no internal notes), as do the queue's agents
    # and admins.
    for who in (requester, agent, admin):
        seen = await comments_as(who)
        assert seen["errors"] == []
        assert seen["data"]["ticketAssigned"]["ticket"]["comments"]["edges"] == [
            {"node": {"body": "ordered a new one"}}
        ]
    # Anyone else: NOT_FOUND, as the ticket itself would be, and no comment in the payload.
    for who in (stranger, outsider_agent):
        refused = await comments_as(who)
        assert [e["extensions"]["code"] for e in refused["errors"]] == ["NOT_FOUND"]
        assert refused["errors"][0]["path"] == ["ticketAssigned", "ticket", "comments"]
        assert "ordered" not in str(refused["data"])
    # Demoted, the agent is refused too.
    member = await demote(api, agent)
    assert [e["extensions"]["code"] for e in (await comments_as(member))["errors"]] == ["NOT_FOUND"]
    # Through the API the ticket itself is NOT_FOUND already for them.
    query = "query($id: ID!) { ticket(id: $id) { comments { totalCount } } }"
    assert code(await api.error(member, query, id=ticket)) == "NOT_FOUND"
    assert (await api.ok(requester, query, id=ticket))["ticket"]["comments"]["totalCount"] == 1


async def test_ticket_comments_put_the_viewer_in_the_cohort_key(api: Api) -> None:
    admin, agent = await api.person(Role.ADMIN), await api.person(Role.AGENT)
    planner = api.app.state.planner
    viewers = [await User.get(id=int(p.id)) for p in (admin, agent)]
    plain = "subscription($u: ID!) { ticketAssigned(userId: $u) { ticket { id title } } }"
    keys = {}
    for document in (plain, COMMENTS_DOCUMENT):
        plans = [
            await planner.plan(Context(api.settings, viewer=v), document, {"u": agent.id}, None)
            for v in viewers
        ]
        keys[document] = {plan.key for plan in plans}
    assert len(keys[plain]) == 1  # one cohort: nothing in it depends on who asks
    assert len(keys[COMMENTS_DOCUMENT]) == 2  # comments: one cohort per viewer


# --- replays and live streams over real sockets -----------------------------------------------


async def person(live: LiveServer, email: str, role: Role = Role.MEMBER) -> Person:
    token = live.token(email, role)
    uid = (await live.gql(token, "{ viewer { id } }"))["viewer"]["id"]
    return Person(id=uid, email=email, role=role, token=token)


async def quiet(client: WS) -> None:
    """Nothing more is in flight for this socket: a ping is answered next."""
    await asyncio.sleep(0.3)
    await client.send({"type": "ping"})
    assert await client.receive() == {"type": "pong"}


async def test_notification_replay_skips_what_the_viewer_can_no_longer_see(live: LiveServer) -> None:
    admin = await person(live, "admin@example.test", Role.ADMIN)
    alice, bob = await person(live, "alice@example.test"), await person(live, "bob@example.test")
    left = (await live.gql(alice.token, PROJECT, n="Left"))["createProject"]["id"]
    kept = (await live.gql(alice.token, PROJECT, n="Kept"))["createProject"]["id"]
    for p in (left, kept):
        await live.gql(admin.token, ADD, p=p, u=bob.id)
    secret = (await live.gql(alice.token, CREATE_TASK, p=left, t="Secret", a=bob.id))["createTask"]["id"]
    await live.gql(alice.token, TASK_COMMENT, id=secret, b="the code is 1234")
    public = (await live.gql(alice.token, CREATE_TASK, p=kept, t="Public", a=bob.id))["createTask"]["id"]
    inbox_now = (await live.gql(bob.token, INBOX))["notifications"]
    await live.gql(bob.token, MARK, ids=[n["id"] for n in nodes(inbox_now)])  # one READ of all three
    await live.gql(alice.token, REMOVE, p=left, u=bob.id)

    topic = f"user:{bob.id}:notifications"
    async with ws(live, bob.token) as client:
        await client.subscribe("1", NOTIFICATION_EVENTS, after=cursor(topic, 0))
        created = (await client.next("1"))["notifications"]
        await quiet(client)
    # Only the notification about the project bob is still in; not the READ that covered both.
    assert created["type"] == "CREATED"
    assert [n["taskId"] for n in created["notifications"]] == [public]
    assert created["cursor"] == cursor(topic, 3)


async def test_a_live_notifications_subscription_receives_nothing_after_removal(live: LiveServer) -> None:
    admin = await person(live, "admin@example.test", Role.ADMIN)
    alice, bob = await person(live, "alice@example.test"), await person(live, "bob@example.test")
    project = (await live.gql(alice.token, PROJECT, n="Board"))["createProject"]["id"]
    other = (await live.gql(alice.token, PROJECT, n="Other"))["createProject"]["id"]
    for p in (project, other):
        await live.gql(admin.token, ADD, p=p, u=bob.id)
    work = (await live.gql(alice.token, CREATE_TASK, p=project, t="Plan", a=bob.id))["createTask"]["id"]
    async with ws(live, bob.token) as client:
        await client.subscribe("1", NOTIFICATION_EVENTS)
        await quiet(client)
        await live.gql(alice.token, TASK_COMMENT, id=work, b="before")
        before = (await client.next("1"))["notifications"]
        assert [n["body"] for n in before["notifications"]] == ["before"]

        await live.gql(alice.token, REMOVE, p=project, u=bob.id)
        await live.gql(alice.token, TASK_COMMENT, id=work, b="after: the secret")
        await live.gql(alice.token, COMPLETE, id=work)
        # The stream lives on for what bob may still see, and that is the next thing it sends.
        elsewhere = (await live.gql(alice.token, CREATE_TASK, p=other, t="Elsewhere", a=bob.id))["createTask"]
        following = (await client.next("1"))["notifications"]
        assert [n["taskId"] for n in following["notifications"]] == [elsewhere["id"]]
        await quiet(client)


async def test_a_demoted_agent_replays_no_assignment_of_a_ticket_they_can_no_longer_see(
    live: LiveServer,
) -> None:
    admin = await person(live, "admin@example.test", Role.ADMIN)
    sam = await person(live, "sam@example.test", Role.AGENT)
    team = (await live.gql(admin.token, TEAM, n="Support"))["createTeam"]["id"]
    inp = {"teamId": team, "name": "Help", "slaFirstResponseMinutes": 60, "slaResolutionMinutes": 480}
    queue = (await live.gql(admin.token, QUEUE, i=inp))["createQueue"]["id"]
    await live.gql(admin.token, JOIN, t=team, u=sam.id)
    theirs = [
        (await live.gql(admin.token, TICKET, q=queue, t=f"Payroll {i}"))["createTicket"]["id"]
        for i in range(2)
    ]
    own = (await live.gql(sam.token, TICKET, q=queue, t="My own laptop"))["createTicket"]["id"]
    for ticket in (*theirs, own):
        await live.gql(admin.token, ASSIGN_TICKET, id=ticket, u=sam.id)
    topic = f"user:{sam.id}:tickets"

    async def replayed(token: str, count: int) -> list[str]:
        async with ws(live, token) as client:
            await client.subscribe("1", ASSIGNED, u=sam.id, after=cursor(topic, 0))
            titles = [(await client.next("1"))["ticketAssigned"]["ticket"]["id"] for _ in range(count)]
            await quiet(client)
        return titles

    assert await replayed(sam.token, 3) == [*theirs, own]  # an agent of the queue: all of them

    await asyncio.sleep(1.1)  # a token's iat is in seconds: the newer one must be newer
    member = live.token(sam.email, Role.MEMBER)
    await live.gql(member, "{ viewer { id } }")
    await User.filter(id=int(sam.id)).update(role=Role.MEMBER)
    # Demoted: only the ticket sam filed, which a requester sees.
    assert await replayed(member, 1) == [own]
    # An admin watching sam sees every ticket.
    assert await replayed(admin.token, 3) == [*theirs, own]


async def test_an_agent_taken_off_the_team_replays_only_what_they_still_see(live: LiveServer) -> None:
    admin = await person(live, "admin@example.test", Role.ADMIN)
    kim = await person(live, "kim@example.test", Role.AGENT)
    teams, queues = [], []
    for name in ("One", "Two"):
        team = (await live.gql(admin.token, TEAM, n=name))["createTeam"]["id"]
        inp = {"teamId": team, "name": name, "slaFirstResponseMinutes": 60, "slaResolutionMinutes": 480}
        queues.append((await live.gql(admin.token, QUEUE, i=inp))["createQueue"]["id"])
        teams.append(team)
        await live.gql(admin.token, JOIN, t=team, u=kim.id)
    tickets = [(await live.gql(admin.token, TICKET, q=q, t="T"))["createTicket"]["id"] for q in queues]
    for ticket in tickets:
        await live.gql(admin.token, ASSIGN_TICKET, id=ticket, u=kim.id)
    await TeamMember.filter(user_id=int(kim.id), team_id=int(teams[0])).delete()  # no mutation does this yet
    async with ws(live, kim.token) as client:
        await client.subscribe("1", ASSIGNED, u=kim.id, after=cursor(f"user:{kim.id}:tickets", 0))
        assert (await client.next("1"))["ticketAssigned"]["ticket"]["id"] == tickets[1]
        await quiet(client)
        # Live: a new assignment (of the team kim is still on) arrives.
        third = (await live.gql(admin.token, TICKET, q=queues[1], t="New"))["createTicket"]["id"]
        await live.gql(admin.token, ASSIGN_TICKET, id=third, u=kim.id)
        assert (await client.next("1"))["ticketAssigned"]["ticket"]["id"] == third
