"""Stored notifications: who gets them, preferences that silence them, reading and deleting them,
and the events each change writes."""

from __future__ import annotations

from pulseboard.models import Event, Role
from tests.helpers import Api, Person, code

NOTIFICATIONS = """
query($first: Int, $after: String, $unreadOnly: Boolean! = false) {
  notifications(first: $first, after: $after, unreadOnly: $unreadOnly) {
    totalCount unreadCount
    pageInfo { hasNextPage endCursor }
    edges { node { id type title body readAt taskId ticketId } }
  }
}"""
CREATE_TASK = """
mutation($p: ID!, $title: String!, $assignee: ID) {
  createTask(input: {projectId: $p, title: $title, assigneeId: $assignee}) { id }
}"""
ASSIGN_TASK = "mutation($id: ID!, $u: ID) { assignTask(id: $id, assigneeId: $u) { id } }"
UPDATE_PREFERENCES = """
mutation($input: UpdatePreferencesInput!) { updatePreferences(input: $input) { enabled } }"""


async def inbox(api: Api, who: Person) -> list[dict]:
    """The person's notifications, newest first."""
    data = await api.ok(who, NOTIFICATIONS, first=100)
    return [edge["node"] for edge in data["notifications"]["edges"]]


async def kinds(api: Api, who: Person) -> list[str]:
    return [n["type"] for n in await inbox(api, who)]


async def shared_project(api: Api, owner: Person, *members: Person) -> str:
    """A project of `owner`'s; an admin adds the members (an admin may add anyone)."""
    project = await api.ok(owner, 'mutation { createProject(input: {name: "Board"}) { id } }')
    project_id = project["createProject"]["id"]
    admin = await api.person(Role.ADMIN) if members else None
    for member in members:
        await api.ok(
            admin,
            "mutation($p: ID!, $u: ID!) { addProjectMember(projectId: $p, userId: $u) { id } }",
            p=project_id,
            u=member.id,
        )
    return project_id


async def new_task(api: Api, actor: Person, project: str, title: str, assignee: Person | None = None) -> str:
    data = await api.ok(
        actor, CREATE_TASK, p=project, title=title, assignee=assignee.id if assignee else None
    )
    return data["createTask"]["id"]


async def support_ticket(api: Api) -> tuple[Person, Person, Person, str]:
    """(admin, agent, requester, ticket id): the agent works the queue the ticket was filed in."""
    admin, agent, requester = await api.person(Role.ADMIN), await api.person(Role.AGENT), await api.person()
    team = (await api.ok(admin, 'mutation { createTeam(input: {name: "Support"}) { id } }'))["createTeam"]
    await api.ok(
        admin,
        "mutation($t: ID!, $u: ID!) { addTeamMember(teamId: $t, userId: $u) { id } }",
        t=team["id"],
        u=agent.id,
    )
    queue = await api.ok(
        admin,
        'mutation($t: ID!) { createQueue(input: {teamId: $t, name: "Help",'
        " slaFirstResponseMinutes: 30, slaResolutionMinutes: 240}) { id } }",
        t=team["id"],
    )
    ticket = await api.ok(
        requester,
        'mutation($q: ID!) { createTicket(input: {queueId: $q, title: "VPN down"}) { id } }',
        q=queue["createQueue"]["id"],
    )
    return admin, agent, requester, ticket["createTicket"]["id"]


async def notified(api: Api, who: Person, count: int) -> list[str]:
    """Gives `who` `count` unread TASK_ASSIGNED notifications; returns their ids, oldest first."""
    other = await api.person()
    project = await shared_project(api, other, who)
    for i in range(count):
        await new_task(api, other, project, f"Task {i}", assignee=who)
    return [n["id"] for n in reversed(await inbox(api, who))]


# --- who is notified --------------------------------------------------------------------------


async def test_assigning_a_task_notifies_the_assignee(api: Api) -> None:
    alice, bob = await api.person(), await api.person()
    project = await shared_project(api, alice, bob)
    task = await new_task(api, alice, project, "Write report")
    assert await inbox(api, bob) == []
    await api.ok(alice, ASSIGN_TASK, id=task, u=bob.id)
    [notification] = await inbox(api, bob)
    assert notification["type"] == "TASK_ASSIGNED"
    assert notification["taskId"] == task
    assert notification["ticketId"] is None
    assert notification["readAt"] is None
    assert "Write report" in notification["title"]
    # Creating a task with an assignee notifies them too.
    other = await new_task(api, alice, project, "Ship it", assignee=bob)
    assert [(n["type"], n["taskId"]) for n in await inbox(api, bob)] == [
        ("TASK_ASSIGNED", other),
        ("TASK_ASSIGNED", task),
    ]
    assert await inbox(api, alice) == []


async def test_the_actor_is_never_notified_of_their_own_action(api: Api) -> None:
    alice = await api.person()
    project = await shared_project(api, alice)
    task = await new_task(api, alice, project, "Mine", assignee=alice)
    await api.ok(alice, ASSIGN_TASK, id=task, u=None)
    await api.ok(alice, ASSIGN_TASK, id=task, u=alice.id)
    await api.ok(alice, 'mutation($id: ID!) { addTaskComment(taskId: $id, body: "note") { id } }', id=task)
    await api.ok(alice, "mutation($id: ID!) { completeTask(id: $id) { id } }", id=task)
    assert await inbox(api, alice) == []


async def test_completion_notifies_creator_and_assignee(api: Api) -> None:
    alice, bob, carol = await api.person(), await api.person(), await api.person()
    project = await shared_project(api, alice, bob, carol)
    task = await new_task(api, alice, project, "Fix bug", assignee=bob)
    await api.ok(carol, "mutation($id: ID!) { completeTask(id: $id) { status } }", id=task)
    assert await kinds(api, alice) == ["TASK_COMPLETED"]
    assert await kinds(api, bob) == ["TASK_COMPLETED", "TASK_ASSIGNED"]
    assert await kinds(api, carol) == []
    # Completing again changes nothing, so nobody hears about it twice.
    await api.ok(carol, "mutation($id: ID!) { completeTask(id: $id) { status } }", id=task)
    assert await kinds(api, alice) == ["TASK_COMPLETED"]
    # Moving a task into the DONE column is a completion too.
    moved = await new_task(api, alice, project, "Review")
    await api.ok(
        carol, "mutation($id: ID!) { moveTask(id: $id, status: IN_PROGRESS, position: 0) { id } }", id=moved
    )
    assert await kinds(api, alice) == ["TASK_COMPLETED"]
    await api.ok(
        carol, "mutation($id: ID!) { moveTask(id: $id, status: DONE, position: 0) { id } }", id=moved
    )
    latest = (await inbox(api, alice))[0]
    assert (latest["type"], latest["taskId"]) == ("TASK_COMPLETED", moved)


async def test_comments_notify_creator_and_assignee(api: Api) -> None:
    alice, bob, carol = await api.person(), await api.person(), await api.person()
    project = await shared_project(api, alice, bob, carol)
    task = await new_task(api, alice, project, "Plan", assignee=bob)
    await api.ok(
        carol, 'mutation($id: ID!) { addTaskComment(taskId: $id, body: "Looks good") { id } }', id=task
    )
    for person in (alice, bob):
        latest = (await inbox(api, person))[0]
        assert (latest["type"], latest["body"], latest["taskId"]) == ("TASK_COMMENTED", "Looks good", task)
    assert await kinds(api, carol) == []


async def test_ticket_assignment_notifies_the_assignee(api: Api) -> None:
    admin, agent, requester, ticket = await support_ticket(api)
    await api.ok(
        admin,
        "mutation($id: ID!, $u: ID) { assignTicket(id: $id, assigneeId: $u) { id } }",
        id=ticket,
        u=agent.id,
    )
    [notification] = await inbox(api, agent)
    assert (notification["type"], notification["ticketId"], notification["taskId"]) == (
        "TICKET_ASSIGNED",
        ticket,
        None,
    )
    assert await inbox(api, requester) == []
    assert await inbox(api, admin) == []


async def test_ticket_status_change_notifies_requester_and_assignee(api: Api) -> None:
    admin, agent, requester, ticket = await support_ticket(api)
    await api.ok(
        agent,
        "mutation($id: ID!, $u: ID) { assignTicket(id: $id, assigneeId: $u) { id } }",
        id=ticket,
        u=agent.id,
    )
    assert await inbox(api, agent) == []  # self-assignment
    await api.ok(admin, "mutation($id: ID!) { setTicketStatus(id: $id, status: PENDING) { id } }", id=ticket)
    assert await kinds(api, requester) == ["TICKET_STATUS_CHANGED"]
    assert await kinds(api, agent) == ["TICKET_STATUS_CHANGED"]
    assert "PENDING" in (await inbox(api, requester))[0]["title"]
    # When the assignee changes the status, only the requester hears of it.
    await api.ok(agent, "mutation($id: ID!) { setTicketStatus(id: $id, status: RESOLVED) { id } }", id=ticket)
    assert await kinds(api, requester) == ["TICKET_STATUS_CHANGED"] * 2
    assert await kinds(api, agent) == ["TICKET_STATUS_CHANGED"]
    assert await inbox(api, admin) == []


async def test_priority_change_notifies_the_assignee_only(api: Api) -> None:
    admin, agent, requester, ticket = await support_ticket(api)
    await api.ok(
        admin, "mutation($id: ID!) { setTicketPriority(id: $id, priority: URGENT) { id } }", id=ticket
    )
    assert await inbox(api, agent) == []  # nobody is assigned yet
    await api.ok(
        agent,
        "mutation($id: ID!, $u: ID) { assignTicket(id: $id, assigneeId: $u) { id } }",
        id=ticket,
        u=agent.id,
    )
    await api.ok(admin, "mutation($id: ID!) { setTicketPriority(id: $id, priority: LOW) { id } }", id=ticket)
    assert await kinds(api, agent) == ["TICKET_PRIORITY_CHANGED"]
    assert await inbox(api, requester) == []


# --- preferences silence notifications --------------------------------------------------------


async def test_type_turned_off_in_app_is_not_listed(api: Api) -> None:
    # Not listed, but still delivered to the browser: see test_notification_channels.
    alice, bob = await api.person(), await api.person()
    project = await shared_project(api, alice, bob)
    await api.ok(bob, UPDATE_PREFERENCES, input={"types": [{"type": "TASK_ASSIGNED", "inApp": False}]})
    task = await new_task(api, alice, project, "Quietly", assignee=bob)
    assert await inbox(api, bob) == []
    # Other types still come through.
    await api.ok(alice, "mutation($id: ID!) { completeTask(id: $id) { id } }", id=task)
    assert await kinds(api, bob) == ["TASK_COMPLETED"]
    # Turning off other channels leaves the in-app one alone.
    await api.ok(
        bob,
        UPDATE_PREFERENCES,
        input={"types": [{"type": "TASK_COMPLETED", "browser": False, "email": False}]},
    )
    second = await new_task(api, alice, project, "Loud", assignee=bob)
    await api.ok(alice, "mutation($id: ID!) { completeTask(id: $id) { id } }", id=second)
    assert await kinds(api, bob) == ["TASK_COMPLETED", "TASK_COMPLETED"]


async def test_master_switch_off_silences_everything(api: Api) -> None:
    admin, agent, requester, ticket = await support_ticket(api)
    await api.ok(requester, UPDATE_PREFERENCES, input={"enabled": False})
    await api.ok(admin, "mutation($id: ID!) { setTicketStatus(id: $id, status: OPEN) { id } }", id=ticket)
    await api.ok(
        agent, 'mutation($id: ID!) { addTicketComment(ticketId: $id, body: "On it") { id } }', id=ticket
    )
    assert await inbox(api, requester) == []
    # Switched back on, the next change is stored again.
    await api.ok(requester, UPDATE_PREFERENCES, input={"enabled": True})
    await api.ok(admin, "mutation($id: ID!) { setTicketStatus(id: $id, status: PENDING) { id } }", id=ticket)
    assert await kinds(api, requester) == ["TICKET_STATUS_CHANGED"]


# --- listing, reading, deleting ---------------------------------------------------------------


async def test_listing_pages_counts_and_unread_only(api: Api) -> None:
    alice, bob = await api.person(), await api.person()
    ids = await notified(api, bob, 3)
    theirs = await notified(api, alice, 2)
    first = (await api.ok(bob, NOTIFICATIONS, first=2))["notifications"]
    assert [e["node"]["id"] for e in first["edges"]] == [ids[2], ids[1]]  # newest first
    assert (first["totalCount"], first["unreadCount"], first["pageInfo"]["hasNextPage"]) == (3, 3, True)
    rest = (await api.ok(bob, NOTIFICATIONS, first=2, after=first["pageInfo"]["endCursor"]))["notifications"]
    assert [e["node"]["id"] for e in rest["edges"]] == [ids[0]]
    assert rest["pageInfo"]["hasNextPage"] is False

    await api.ok(bob, "mutation($ids: [ID!]!) { markNotificationsRead(ids: $ids) { id } }", ids=[ids[1]])
    unread = (await api.ok(bob, NOTIFICATIONS, unreadOnly=True))["notifications"]
    assert [e["node"]["id"] for e in unread["edges"]] == [ids[2], ids[0]]
    assert (unread["totalCount"], unread["unreadCount"]) == (2, 2)
    everything = (await api.ok(bob, NOTIFICATIONS))["notifications"]
    assert (everything["totalCount"], everything["unreadCount"]) == (3, 2)
    # Alice's notifications are hers alone.
    assert sorted(n["id"] for n in await inbox(api, alice)) == sorted(theirs)
    assert not set(ids) & set(theirs)


async def test_mark_notifications_read(api: Api) -> None:
    bob = await api.person()
    ids = await notified(api, bob, 2)
    query = "mutation($ids: [ID!]!) { markNotificationsRead(ids: $ids) { id readAt } }"
    marked = (await api.ok(bob, query, ids=[ids[0]]))["markNotificationsRead"]
    assert [n["id"] for n in marked] == [ids[0]]
    assert marked[0]["readAt"] is not None
    # Marking again is harmless and keeps the first time it was read.
    again = (await api.ok(bob, query, ids=[ids[0], ids[0]]))["markNotificationsRead"]
    assert again == marked
    by_id = {n["id"]: n for n in await inbox(api, bob)}
    assert by_id[ids[0]]["readAt"] == marked[0]["readAt"]
    assert by_id[ids[1]]["readAt"] is None


async def test_mark_read_is_all_or_none(api: Api) -> None:
    alice, bob = await api.person(), await api.person()
    mine = await notified(api, alice, 2)
    theirs = await notified(api, bob, 1)
    query = "mutation($ids: [ID!]!) { markNotificationsRead(ids: $ids) { id } }"
    for foreign in (theirs[0], "999999", "nope"):
        error = await api.error(alice, query, ids=[mine[0], foreign, mine[1]])
        assert code(error) == "NOT_FOUND"
        assert error["message"] == f"Notification {foreign} not found."
    # Too many ids at once is refused as bad input (not a database error), also all or none.
    error = await api.error(alice, query, ids=mine + [str(i) for i in range(100_000, 140_000)])
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "ids"}
    assert [n["readAt"] for n in await inbox(api, alice)] == [None, None]
    assert [n["readAt"] for n in await inbox(api, bob)] == [None]


async def test_mark_all_read_returns_the_count(api: Api) -> None:
    alice, bob = await api.person(), await api.person()
    ids = await notified(api, alice, 3)
    await notified(api, bob, 2)
    await api.ok(alice, "mutation($ids: [ID!]!) { markNotificationsRead(ids: $ids) { id } }", ids=[ids[0]])
    assert (await api.ok(alice, "mutation { markAllNotificationsRead }"))["markAllNotificationsRead"] == 2
    assert (await api.ok(alice, "mutation { markAllNotificationsRead }"))["markAllNotificationsRead"] == 0
    assert all(n["readAt"] for n in await inbox(api, alice))
    # Another user's notifications are untouched.
    assert (await api.ok(bob, NOTIFICATIONS))["notifications"]["unreadCount"] == 2


async def test_delete_notification(api: Api) -> None:
    alice, bob = await api.person(), await api.person()
    mine = await notified(api, alice, 2)
    theirs = await notified(api, bob, 1)
    query = "mutation($id: ID!) { deleteNotification(id: $id) { id type } }"
    deleted = (await api.ok(alice, query, id=mine[0]))["deleteNotification"]
    assert deleted == {"id": mine[0], "type": "TASK_ASSIGNED"}
    assert [n["id"] for n in await inbox(api, alice)] == [mine[1]]
    assert code(await api.error(alice, query, id=mine[0])) == "NOT_FOUND"  # gone already
    error = await api.error(alice, query, id=theirs[0])
    assert code(error) == "NOT_FOUND"
    assert [n["id"] for n in await inbox(api, bob)] == theirs


# --- events -----------------------------------------------------------------------------------


async def test_each_change_writes_an_event_on_the_users_topic(api: Api) -> None:
    bob = await api.person()
    ids = await notified(api, bob, 2)
    topic = f"user:{bob.id}:notifications"
    await api.ok(bob, "mutation($ids: [ID!]!) { markNotificationsRead(ids: $ids) { id } }", ids=[ids[0]])
    await api.ok(bob, "mutation { markAllNotificationsRead }")
    await api.ok(bob, "mutation { markAllNotificationsRead }")  # nothing left to mark: no event
    await api.ok(bob, "mutation($id: ID!) { deleteNotification(id: $id) { id } }", id=ids[1])

    events = await Event.filter(topic=topic).order_by("seq")
    assert [(e.seq, e.type) for e in events] == [
        (1, "CREATED"),
        (2, "CREATED"),
        (3, "READ"),
        (4, "READ"),
        (5, "DELETED"),
    ]
    # Every payload carries the rows it is about, as they were at the event.
    rows = [
        [(str(n["id"]), n["type"], n["read_at"] is not None) for n in e.payload["notifications"]]
        for e in events
    ]
    assert rows == [
        [(ids[0], "TASK_ASSIGNED", False)],
        [(ids[1], "TASK_ASSIGNED", False)],
        [(ids[0], "TASK_ASSIGNED", True)],
        [(ids[1], "TASK_ASSIGNED", True)],
        [(ids[1], "TASK_ASSIGNED", True)],
    ]
    assert {e.actor_id for e in events[2:]} == {int(bob.id)}


async def test_no_event_without_a_change(api: Api) -> None:
    alice, bob, carol = await api.person(), await api.person(), await api.person()
    mine = await notified(api, alice, 1)
    theirs = await notified(api, bob, 1)
    await api.error(
        alice, "mutation($ids: [ID!]!) { markNotificationsRead(ids: $ids) { id } }", ids=mine + theirs
    )
    await api.error(alice, "mutation($id: ID!) { deleteNotification(id: $id) { id } }", id=theirs[0])
    # A notification that preferences silence is neither stored nor announced.
    project = await shared_project(api, alice, carol)
    await api.ok(carol, UPDATE_PREFERENCES, input={"enabled": False})
    await new_task(api, alice, project, "Hush", assignee=carol)
    topics = [f"user:{p.id}:notifications" for p in (alice, bob, carol)]
    events = await Event.filter(topic__in=topics).order_by("id")
    assert [(e.topic, e.type) for e in events] == [(topics[0], "CREATED"), (topics[1], "CREATED")]
