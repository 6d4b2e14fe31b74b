"""Tickets: who sees and changes them, assignment, status, comments, bulk changes, events."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from pulseboard.models import Event, Role, Ticket
from tests.helpers import Api, Person, code

TICKET_FIELDS = """
  id title description status priority version firstResponseAt resolvedAt
  queue { id } requester { id } assignee { id }
"""
CREATE = f"""
mutation($input: CreateTicketInput!) {{ createTicket(input: $input) {{ {TICKET_FIELDS} }} }}"""
GET = f"query($id: ID!) {{ ticket(id: $id) {{ {TICKET_FIELDS} }} }}"
LIST = """
query($queueId: ID, $status: TicketStatus, $priority: TicketPriority, $assigneeId: ID) {
  tickets(queueId: $queueId, status: $status, priority: $priority, assigneeId: $assigneeId) {
    totalCount edges { node { id } }
  }
}"""
UPDATE = f"""
mutation($id: ID!, $input: UpdateTicketInput!, $v: Int) {{
  updateTicket(id: $id, input: $input, expectedVersion: $v) {{ {TICKET_FIELDS} }}
}}"""
ASSIGN = f"""
mutation($id: ID!, $assigneeId: ID, $v: Int) {{
  assignTicket(id: $id, assigneeId: $assigneeId, expectedVersion: $v) {{ {TICKET_FIELDS} }}
}}"""
STATUS = f"""
mutation($id: ID!, $status: TicketStatus!, $v: Int) {{
  setTicketStatus(id: $id, status: $status, expectedVersion: $v) {{ {TICKET_FIELDS} }}
}}"""
PRIORITY = f"""
mutation($id: ID!, $priority: TicketPriority!, $v: Int) {{
  setTicketPriority(id: $id, priority: $priority, expectedVersion: $v) {{ {TICKET_FIELDS} }}
}}"""
COMMENT = """
mutation($id: ID!, $body: String!) {
  addTicketComment(ticketId: $id, body: $body) { id body createdAt author { id } }
}"""
BULK = """
mutation($ids: [ID!]!, $input: BulkUpdateTicketsInput!) {
  bulkUpdateTickets(ids: $ids, input: $input) { id status priority version assignee { id } }
}"""

# One write of each kind, as (query, variables besides id).
WRITES = {
    "updateTicket": (UPDATE, {"input": {"title": "Changed"}}),
    "assignTicket": (ASSIGN, {"assigneeId": None}),
    "setTicketStatus": (STATUS, {"status": "OPEN"}),
    "setTicketPriority": (PRIORITY, {"priority": "URGENT"}),
}

OUTSIDER_WRITES = {**WRITES, "addTicketComment": (COMMENT, {"body": "Me too"})}


@dataclass
class Desk:
    """A team with one queue, an agent on that team, and a member who files tickets."""

    admin: Person
    agent: Person
    requester: Person
    team: str
    queue: str


async def make_queue(api: Api, admin: Person, name: str) -> tuple[str, str]:
    team = await api.ok(admin, "mutation($n: String!) { createTeam(input: {name: $n}) { id } }", n=name)
    team_id = team["createTeam"]["id"]
    inp = {"teamId": team_id, "name": name, "slaFirstResponseMinutes": 60, "slaResolutionMinutes": 480}
    queue = await api.ok(admin, "mutation($i: CreateQueueInput!) { createQueue(input: $i) { id } }", i=inp)
    return team_id, queue["createQueue"]["id"]


async def join(api: Api, admin: Person, team: str, user: Person) -> None:
    await api.ok(
        admin,
        "mutation($t: ID!, $u: ID!) { addTeamMember(teamId: $t, userId: $u) { id } }",
        t=team,
        u=user.id,
    )


async def make_desk(api: Api) -> Desk:
    admin = await api.person(Role.ADMIN)
    team, queue = await make_queue(api, admin, "Support")
    agent = await api.person(Role.AGENT)
    await join(api, admin, team, agent)
    return Desk(admin, agent, await api.person(), team, queue)


async def outside_agent(api: Api, desk: Desk) -> Person:
    """An agent of another team (with its own queue)."""
    team, _ = await make_queue(api, desk.admin, "Elsewhere")
    agent = await api.person(Role.AGENT)
    await join(api, desk.admin, team, agent)
    return agent


async def file(api: Api, who: Person, queue: str, title: str = "Printer on fire", **extra: object) -> dict:
    return (await api.ok(who, CREATE, input={"queueId": queue, "title": title, **extra}))["createTicket"]


async def listed(api: Api, who: Person, **filters: object) -> tuple[list[str], int]:
    page = (await api.ok(who, LIST, **filters))["tickets"]
    return [e["node"]["id"] for e in page["edges"]], page["totalCount"]


async def events(topic: str) -> list[Event]:
    return await Event.filter(topic=topic).order_by("seq")


# --- creating and seeing tickets


async def test_anyone_files_a_ticket_as_requester(api: Api) -> None:
    desk = await make_desk(api)

    ticket = await file(api, desk.requester, desk.queue, description="Smoke everywhere")

    assert ticket["title"] == "Printer on fire"
    assert ticket["description"] == "Smoke everywhere"
    assert ticket["requester"] == {"id": desk.requester.id}
    assert ticket["queue"] == {"id": desk.queue}
    assert (ticket["status"], ticket["priority"], ticket["version"]) == ("NEW", "NORMAL", 1)
    assert ticket["assignee"] is None
    assert ticket["firstResponseAt"] is None
    assert (await file(api, desk.agent, desk.queue, priority="URGENT"))["priority"] == "URGENT"


@pytest.mark.parametrize("title", ["", "   ", "x" * 201])
async def test_ticket_title_must_be_1_to_200_characters(api: Api, title: str) -> None:
    desk = await make_desk(api)

    err = await api.error(desk.requester, CREATE, input={"queueId": desk.queue, "title": title})

    assert code(err) == "BAD_USER_INPUT"
    assert err["extensions"]["field"] == "title"
    assert await Ticket.all().count() == 0


async def test_ticket_in_unknown_queue_is_not_found(api: Api) -> None:
    member = await api.person()

    err = await api.error(member, CREATE, input={"queueId": "4242", "title": "Help"})

    assert code(err) == "NOT_FOUND"


async def test_requester_queue_agents_and_admins_see_the_ticket(api: Api) -> None:
    desk = await make_desk(api)
    ticket = await file(api, desk.requester, desk.queue)

    for who in (desk.requester, desk.agent, desk.admin):
        assert (await api.ok(who, GET, id=ticket["id"]))["ticket"]["id"] == ticket["id"]
        assert await listed(api, who) == ([ticket["id"]], 1)


@pytest.mark.parametrize("kind", ["member", "member of the team", "other team's agent", "agent without team"])
async def test_outsiders_neither_get_nor_list_the_ticket(api: Api, kind: str) -> None:
    desk = await make_desk(api)
    ticket = await file(api, desk.requester, desk.queue)
    if kind == "member":
        outsider = await api.person()
    elif kind == "member of the team":
        outsider = await api.person()
        await join(api, desk.admin, desk.team, outsider)
    elif kind == "other team's agent":
        outsider = await outside_agent(api, desk)
    else:
        outsider = await api.person(Role.AGENT)

    err = await api.error(outsider, GET, id=ticket["id"])

    assert code(err) == "NOT_FOUND"
    assert await listed(api, outsider) == ([], 0)
    assert await listed(api, outsider, queueId=desk.queue) == ([], 0)


async def test_list_shows_own_requests_and_team_queues_newest_first(api: Api) -> None:
    desk = await make_desk(api)
    other = await outside_agent(api, desk)
    _, other_queue = await make_queue(api, desk.admin, "Third")
    first = await file(api, desk.requester, desk.queue, "first")
    elsewhere = await file(api, desk.requester, other_queue, "elsewhere")
    second = await file(api, desk.admin, desk.queue, "second")
    own_elsewhere = await file(api, desk.agent, other_queue, "agent's own request")

    assert await listed(api, desk.agent) == ([own_elsewhere["id"], second["id"], first["id"]], 3)
    assert await listed(api, desk.requester) == ([elsewhere["id"], first["id"]], 2)
    assert await listed(api, other) == ([], 0)
    assert (await listed(api, desk.admin))[1] == 4


async def test_list_filters_by_queue_status_priority_and_assignee(api: Api) -> None:
    desk = await make_desk(api)
    _, other_queue = await make_queue(api, desk.admin, "Other")
    a = await file(api, desk.requester, desk.queue, "a", priority="HIGH")
    b = await file(api, desk.requester, desk.queue, "b")
    c = await file(api, desk.requester, other_queue, "c", priority="HIGH")
    await api.ok(desk.agent, STATUS, id=b["id"], status="PENDING")
    await api.ok(desk.agent, ASSIGN, id=a["id"], assigneeId=desk.agent.id)
    admin = desk.admin

    assert await listed(api, admin, queueId=desk.queue) == ([b["id"], a["id"]], 2)
    assert await listed(api, admin, status="PENDING") == ([b["id"]], 1)
    assert await listed(api, admin, status="NEW") == ([c["id"], a["id"]], 2)
    assert await listed(api, admin, priority="HIGH") == ([c["id"], a["id"]], 2)
    assert await listed(api, admin, assigneeId=desk.agent.id) == ([a["id"]], 1)
    assert await listed(api, admin, queueId=other_queue, priority="HIGH") == ([c["id"]], 1)
    assert await listed(api, admin, queueId=desk.queue, status="CLOSED") == ([], 0)
    for unknown in ("424242", "nonsense"):  # an empty page of a queue that does not exist
        assert code(await api.error(admin, LIST, queueId=unknown)) == "NOT_FOUND"


# --- who may change tickets


@pytest.mark.parametrize("mutation", WRITES)
async def test_requester_who_is_not_an_agent_may_not_change_the_ticket(api: Api, mutation: str) -> None:
    desk = await make_desk(api)
    ticket = await file(api, desk.requester, desk.queue)
    query, variables = WRITES[mutation]

    err = await api.error(desk.requester, query, id=ticket["id"], **variables)

    assert code(err) == "FORBIDDEN"
    assert (await api.ok(desk.requester, GET, id=ticket["id"]))["ticket"] == ticket


@pytest.mark.parametrize("mutation", OUTSIDER_WRITES)
async def test_outsider_changing_a_ticket_gets_not_found(api: Api, mutation: str) -> None:
    desk = await make_desk(api)
    ticket = await file(api, desk.requester, desk.queue)
    outsider = await outside_agent(api, desk)
    query, variables = OUTSIDER_WRITES[mutation]
    event_count = await Event.all().count()

    err = await api.error(outsider, query, id=ticket["id"], **variables)

    assert code(err) == "NOT_FOUND"
    assert (await api.ok(desk.requester, GET, id=ticket["id"]))["ticket"] == ticket
    assert await Event.all().count() == event_count


@pytest.mark.parametrize("mutation", WRITES)
async def test_stale_expected_version_conflicts_and_changes_nothing(api: Api, mutation: str) -> None:
    desk = await make_desk(api)
    ticket = await file(api, desk.requester, desk.queue)
    await api.ok(desk.agent, PRIORITY, id=ticket["id"], priority="HIGH")
    before = (await api.ok(desk.agent, GET, id=ticket["id"]))["ticket"]
    event_count = await Event.all().count()
    query, variables = WRITES[mutation]
    if mutation == "assignTicket":
        variables = {"assigneeId": desk.agent.id}

    err = await api.error(desk.agent, query, id=ticket["id"], v=1, **variables)

    assert code(err) == "CONFLICT"
    assert err["extensions"]["currentVersion"] == 2
    assert (await api.ok(desk.agent, GET, id=ticket["id"]))["ticket"] == before
    assert await Event.all().count() == event_count


async def test_update_ticket_changes_fields_and_increments_version(api: Api) -> None:
    desk = await make_desk(api)
    ticket = await file(api, desk.requester, desk.queue)

    updated = await api.ok(
        desk.agent, UPDATE, id=ticket["id"], input={"title": " Toner low ", "description": "tray 2"}, v=1
    )

    assert updated["updateTicket"]["title"] == "Toner low"
    assert updated["updateTicket"]["description"] == "tray 2"
    assert updated["updateTicket"]["version"] == 2
    again = await api.ok(desk.admin, UPDATE, id=ticket["id"], input={"title": "Toner out"}, v=2)
    assert again["updateTicket"]["version"] == 3
    assert again["updateTicket"]["description"] == "tray 2"


# --- assignment


async def test_assign_to_queue_agent_then_unassign(api: Api) -> None:
    desk = await make_desk(api)
    ticket = await file(api, desk.requester, desk.queue)

    assigned = (await api.ok(desk.agent, ASSIGN, id=ticket["id"], assigneeId=desk.agent.id))["assignTicket"]
    to_admin = (await api.ok(desk.agent, ASSIGN, id=ticket["id"], assigneeId=desk.admin.id))["assignTicket"]
    cleared = (await api.ok(desk.agent, ASSIGN, id=ticket["id"], assigneeId=None, v=3))["assignTicket"]

    assert (assigned["assignee"], assigned["version"]) == ({"id": desk.agent.id}, 2)
    assert (to_admin["assignee"], to_admin["version"]) == ({"id": desk.admin.id}, 3)
    assert (cleared["assignee"], cleared["version"]) == (None, 4)


@pytest.mark.parametrize("kind", ["member of the team", "agent of another team", "unknown user"])
async def test_assignee_must_be_an_agent_of_the_queue(api: Api, kind: str) -> None:
    desk = await make_desk(api)
    ticket = await file(api, desk.requester, desk.queue)
    if kind == "member of the team":
        member = await api.person()
        await join(api, desk.admin, desk.team, member)
        assignee_id = member.id
    elif kind == "agent of another team":
        assignee_id = (await outside_agent(api, desk)).id
    else:
        assignee_id = "987654"
    event_count = await Event.all().count()

    err = await api.error(desk.agent, ASSIGN, id=ticket["id"], assigneeId=assignee_id)

    assert code(err) == "BAD_USER_INPUT"
    assert err["extensions"]["field"] == "assigneeId"
    assert (await api.ok(desk.agent, GET, id=ticket["id"]))["ticket"] == ticket
    assert await Event.all().count() == event_count


# --- status and comments


async def test_resolving_sets_resolved_at_and_reopening_clears_it(api: Api) -> None:
    desk = await make_desk(api)
    ticket = await file(api, desk.requester, desk.queue)

    resolved = (await api.ok(desk.agent, STATUS, id=ticket["id"], status="RESOLVED"))["setTicketStatus"]
    closed = (await api.ok(desk.agent, STATUS, id=ticket["id"], status="CLOSED"))["setTicketStatus"]
    reopened = (await api.ok(desk.agent, STATUS, id=ticket["id"], status="OPEN"))["setTicketStatus"]

    assert resolved["status"] == "RESOLVED"
    assert resolved["resolvedAt"] is not None
    assert closed["resolvedAt"] == resolved["resolvedAt"]
    assert (reopened["status"], reopened["resolvedAt"], reopened["version"]) == ("OPEN", None, 4)


async def test_first_response_is_the_first_comment_by_someone_but_the_requester(api: Api) -> None:
    desk = await make_desk(api)
    ticket = await file(api, desk.requester, desk.queue)

    await api.ok(desk.requester, COMMENT, id=ticket["id"], body="Any news?")
    after_own = (await api.ok(desk.requester, GET, id=ticket["id"]))["ticket"]
    reply = (await api.ok(desk.agent, COMMENT, id=ticket["id"], body="Looking"))["addTicketComment"]
    after_reply = (await api.ok(desk.requester, GET, id=ticket["id"]))["ticket"]
    await api.ok(desk.admin, COMMENT, id=ticket["id"], body="Fixed")
    await api.ok(desk.requester, COMMENT, id=ticket["id"], body="Thanks")
    final = (await api.ok(desk.requester, GET, id=ticket["id"]))["ticket"]

    assert after_own["firstResponseAt"] is None
    assert reply["author"] == {"id": desk.agent.id}
    assert after_reply["firstResponseAt"] == reply["createdAt"]
    assert final["firstResponseAt"] == reply["createdAt"]
    comments = await api.ok(
        desk.requester,
        "query($id: ID!) { ticket(id: $id) { comments { totalCount edges { node { body } } } } }",
        id=ticket["id"],
    )
    bodies = [e["node"]["body"] for e in comments["ticket"]["comments"]["edges"]]
    assert bodies == ["Any news?", "Looking", "Fixed", "Thanks"]


# --- bulk updates


async def test_bulk_update_applies_every_change_to_every_ticket(api: Api) -> None:
    desk = await make_desk(api)
    a = await file(api, desk.requester, desk.queue, "a")
    b = await file(api, desk.requester, desk.queue, "b")
    input = {"status": "PENDING", "priority": "HIGH", "assigneeId": desk.agent.id}

    result = (await api.ok(desk.agent, BULK, ids=[a["id"], b["id"]], input=input))["bulkUpdateTickets"]

    assert [t["id"] for t in result] == [a["id"], b["id"]]
    for t in result:
        assert (t["status"], t["priority"], t["assignee"], t["version"]) == (
            "PENDING",
            "HIGH",
            {"id": desk.agent.id},
            4,
        )
    assert await listed(api, desk.admin, status="PENDING", assigneeId=desk.agent.id) == (
        [b["id"], a["id"]],
        2,
    )


async def test_bulk_update_with_null_assignee_unassigns(api: Api) -> None:
    desk = await make_desk(api)
    a = await file(api, desk.requester, desk.queue, "a")
    await api.ok(desk.agent, ASSIGN, id=a["id"], assigneeId=desk.agent.id)

    result = (await api.ok(desk.agent, BULK, ids=[a["id"]], input={"assigneeId": None}))["bulkUpdateTickets"]

    assert result == [{"id": a["id"], "status": "NEW", "priority": "NORMAL", "version": 3, "assignee": None}]


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        ("unknown ticket", "NOT_FOUND"),
        ("other team's ticket", "NOT_FOUND"),
        ("own request elsewhere", "FORBIDDEN"),
        ("invalid assignee", "BAD_USER_INPUT"),
    ],
)
async def test_bulk_update_is_all_or_nothing(api: Api, bad: str, expected: str) -> None:
    desk = await make_desk(api)
    a = await file(api, desk.requester, desk.queue, "a")
    b = await file(api, desk.requester, desk.queue, "b")
    _, other_queue = await make_queue(api, desk.admin, "Other")
    input = {"status": "RESOLVED", "priority": "LOW", "assigneeId": desk.agent.id}
    if bad == "unknown ticket":
        ids = [a["id"], b["id"], "99999"]
    elif bad == "other team's ticket":
        ids = [a["id"], b["id"], (await file(api, desk.requester, other_queue))["id"]]
    elif bad == "own request elsewhere":
        ids = [a["id"], b["id"], (await file(api, desk.agent, other_queue))["id"]]
    else:
        ids = [a["id"], b["id"]]
        input["assigneeId"] = desk.requester.id
    before = [
        (t.id, t.status, t.priority, t.assignee_id, t.version) for t in await Ticket.all().order_by("id")
    ]
    event_count = await Event.all().count()

    err = await api.error(desk.agent, BULK, ids=ids, input=input)

    assert code(err) == expected
    after = [
        (t.id, t.status, t.priority, t.assignee_id, t.version) for t in await Ticket.all().order_by("id")
    ]
    assert after == before
    assert await Event.all().count() == event_count


async def test_bulk_update_needs_ids(api: Api) -> None:
    desk = await make_desk(api)

    err = await api.error(desk.agent, BULK, ids=[], input={"status": "OPEN"})

    assert code(err) == "BAD_USER_INPUT"
    assert err["extensions"]["field"] == "ids"


# --- events


async def test_ticket_mutations_record_gap_free_queue_events(api: Api) -> None:
    desk = await make_desk(api)
    ticket = await file(api, desk.requester, desk.queue)
    tid = ticket["id"]
    await api.ok(desk.agent, UPDATE, id=tid, input={"title": "New title"})
    await api.ok(desk.agent, ASSIGN, id=tid, assigneeId=desk.agent.id)
    await api.ok(desk.agent, STATUS, id=tid, status="OPEN")
    await api.ok(desk.agent, PRIORITY, id=tid, priority="HIGH")
    await api.ok(desk.agent, COMMENT, id=tid, body="On it")

    log = await events(f"queue:{desk.queue}")

    assert [e.type for e in log] == [
        "CREATED",
        "UPDATED",
        "ASSIGNED",
        "STATUS_CHANGED",
        "PRIORITY_CHANGED",
        "COMMENTED",
    ]
    assert [e.seq for e in log] == [1, 2, 3, 4, 5, 6]
    assert all(e.payload["ticket"]["id"] == int(tid) for e in log)
    assert log[0].actor_id == int(desk.requester.id)
    assert {e.actor_id for e in log[1:]} == {int(desk.agent.id)}
    assert log[1].payload["changes"] == [{"field": "title", "from": "Printer on fire", "to": "New title"}]
    assert log[3].payload["changes"] == [{"field": "status", "from": "NEW", "to": "OPEN"}]
    assert log[5].payload["comment"]["body"] == "On it"


async def test_assignments_are_also_published_to_the_assignee(api: Api) -> None:
    desk = await make_desk(api)
    ticket = await file(api, desk.requester, desk.queue)
    tid = ticket["id"]
    await api.ok(desk.agent, ASSIGN, id=tid, assigneeId=desk.agent.id)
    await api.ok(desk.agent, ASSIGN, id=tid, assigneeId=desk.admin.id)
    await api.ok(desk.agent, ASSIGN, id=tid, assigneeId=None)

    agent_log = await events(f"user:{desk.agent.id}:tickets")
    admin_log = await events(f"user:{desk.admin.id}:tickets")
    queue_log = [e for e in await events(f"queue:{desk.queue}") if e.type == "ASSIGNED"]

    agent_id, admin_id = int(desk.agent.id), int(desk.admin.id)
    assert [(e.seq, e.type) for e in agent_log] == [(1, "ASSIGNED")]
    assert (agent_log[0].payload["assigneeId"], agent_log[0].payload["previousAssigneeId"]) == (
        agent_id,
        None,
    )
    assert agent_log[0].payload["ticket"]["id"] == int(tid)
    assert [(e.seq, e.type) for e in admin_log] == [(1, "ASSIGNED")]
    assert (admin_log[0].payload["assigneeId"], admin_log[0].payload["previousAssigneeId"]) == (
        admin_id,
        agent_id,
    )
    assert [(e.payload["assigneeId"], e.payload["previousAssigneeId"]) for e in queue_log] == [
        (agent_id, None),
        (admin_id, agent_id),
        (None, admin_id),
    ]


async def test_bulk_assignment_publishes_one_user_event_per_ticket(api: Api) -> None:
    desk = await make_desk(api)
    a = await file(api, desk.requester, desk.queue, "a")
    b = await file(api, desk.requester, desk.queue, "b")

    await api.ok(desk.admin, BULK, ids=[a["id"], b["id"]], input={"assigneeId": desk.agent.id})

    log = await events(f"user:{desk.agent.id}:tickets")
    assert [e.seq for e in log] == [1, 2]
    assert {e.payload["ticket"]["id"] for e in log} == {int(a["id"]), int(b["id"])}
    assert all(e.type == "ASSIGNED" and e.payload["assigneeId"] == int(desk.agent.id) for e in log)
    queue_log = await events(f"queue:{desk.queue}")
    assert [e.seq for e in queue_log] == [1, 2, 3, 4]
    assert [e.type for e in queue_log[2:]] == ["ASSIGNED", "ASSIGNED"]


async def test_failed_mutations_record_no_events(api: Api) -> None:
    desk = await make_desk(api)
    ticket = await file(api, desk.requester, desk.queue)
    tid = ticket["id"]
    event_count = await Event.all().count()

    failures = [
        (desk.requester, STATUS, {"status": "CLOSED"}, "FORBIDDEN"),
        (desk.agent, UPDATE, {"input": {"title": " "}}, "BAD_USER_INPUT"),
        (desk.agent, PRIORITY, {"priority": "LOW", "v": 7}, "CONFLICT"),
        (desk.agent, COMMENT, {"body": "   "}, "BAD_USER_INPUT"),
    ]
    for who, query, variables, expected in failures:
        assert code(await api.error(who, query, id=tid, **variables)) == expected
    err = await api.error(desk.requester, CREATE, input={"queueId": desk.queue, "title": ""})
    assert code(err) == "BAD_USER_INPUT"

    assert await Event.all().count() == event_count
    await api.ok(desk.agent, STATUS, id=tid, status="OPEN")
    assert [e.seq for e in await events(f"queue:{desk.queue}")] == [1, 2]
