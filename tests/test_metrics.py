"""queueMetrics: who may read a queue's figures, and what they count."""

from __future__ import annotations

import datetime as dt

import pytest
from tortoise import timezone

from pulseboard.models import Role, Ticket, TicketStatus
from tests.helpers import Api, Person, code

METRICS = """
query($q: ID!) {
  queueMetrics(queueId: $q) {
    queueId open unassigned oldestOpenAgeSeconds avgFirstResponseSeconds
    slaBreached slaAtRisk createdLastHour resolvedLastHour computedAt
    byStatus { status count } byPriority { priority count }
  }
}"""
FIRST_RESPONSE_MINUTES = 60
RESOLUTION_MINUTES = 240


async def make_queue(api: Api, admin: Person, name: str) -> tuple[str, str]:
    team = await api.ok(admin, "mutation($n: String!) { createTeam(input: {name: $n}) { id } }", n=name)
    team_id = team["createTeam"]["id"]
    inp = {
        "teamId": team_id,
        "name": name,
        "slaFirstResponseMinutes": FIRST_RESPONSE_MINUTES,
        "slaResolutionMinutes": RESOLUTION_MINUTES,
    }
    queue = await api.ok(admin, "mutation($i: CreateQueueInput!) { createQueue(input: $i) { id } }", i=inp)
    return team_id, queue["createQueue"]["id"]


async def join(api: Api, admin: Person, team: str, user: Person) -> None:
    mutation = "mutation($t: ID!, $u: ID!) { addTeamMember(teamId: $t, userId: $u) { id } }"
    await api.ok(admin, mutation, t=team, u=user.id)


def ago(**delta: float) -> dt.datetime:
    return timezone.now() - dt.timedelta(**delta)


async def ticket_in(
    queue: str,
    requester: Person,
    *,
    status: TicketStatus = TicketStatus.NEW,
    assignee: Person | None = None,
    **fields: object,
) -> Ticket:
    """A ticket stored directly, so its timestamps can be anywhere in the past."""
    ticket = await Ticket.create(
        queue_id=int(queue),
        title="t",
        requester_id=int(requester.id),
        status=status,
        assignee_id=int(assignee.id) if assignee else None,
        **{k: v for k, v in fields.items() if k != "created_at"},
    )
    if "created_at" in fields:  # auto_now_add ignores a value given to create()
        await Ticket.filter(id=ticket.id).update(created_at=fields["created_at"])
    return ticket


@pytest.fixture
async def setup(api: Api) -> tuple[Person, Person, str, str]:
    """(admin, agent of the queue's team, team id, queue id)."""
    admin = await api.person(Role.ADMIN)
    team, queue = await make_queue(api, admin, "Support")
    agent = await api.person(Role.AGENT)
    await join(api, admin, team, agent)
    return admin, agent, team, queue


async def metrics(api: Api, who: Person, queue: str) -> dict:
    return (await api.ok(who, METRICS, q=queue))["queueMetrics"]


# --- access


@pytest.mark.parametrize(
    "kind", ["member of the team", "member", "agent of another team", "agent without team"]
)
async def test_others_may_not_read_metrics(api: Api, setup: tuple, kind: str) -> None:
    admin, _, team, queue = setup
    if kind == "member of the team":
        who = await api.person()
        await join(api, admin, team, who)
    elif kind == "agent of another team":
        other_team, _ = await make_queue(api, admin, "Other")
        who = await api.person(Role.AGENT)
        await join(api, admin, other_team, who)
    else:
        who = await api.person(Role.AGENT if kind == "agent without team" else Role.MEMBER)

    err = await api.error(who, METRICS, q=queue)

    assert code(err) == "FORBIDDEN"


async def test_metrics_of_unknown_queue_are_not_found(api: Api, setup: tuple) -> None:
    admin, _, _, _ = setup

    err = await api.error(admin, METRICS, q="777")

    assert code(err) == "NOT_FOUND"


# --- figures


async def test_empty_queue_has_zero_figures_for_every_status_and_priority(api: Api, setup: tuple) -> None:
    admin, agent, _, queue = setup

    m = await metrics(api, agent, queue)

    assert m["queueId"] == queue
    assert (await metrics(api, admin, queue))["byStatus"] == m["byStatus"]

    assert m["byStatus"] == [
        {"status": s, "count": 0} for s in ("NEW", "OPEN", "PENDING", "RESOLVED", "CLOSED")
    ]
    assert m["byPriority"] == [{"priority": p, "count": 0} for p in ("LOW", "NORMAL", "HIGH", "URGENT")]
    assert (m["open"], m["unassigned"], m["slaBreached"], m["slaAtRisk"]) == (0, 0, 0, 0)
    assert (m["createdLastHour"], m["resolvedLastHour"]) == (0, 0)
    assert m["oldestOpenAgeSeconds"] is None
    assert m["avgFirstResponseSeconds"] is None


async def test_counts_by_status_priority_and_assignment(api: Api, setup: tuple) -> None:
    admin, agent, _, queue = setup
    _, other_queue = await make_queue(api, admin, "Other")
    await ticket_in(queue, admin, status=TicketStatus.NEW, priority="HIGH")
    await ticket_in(queue, admin, status=TicketStatus.OPEN, assignee=agent, priority="HIGH")
    await ticket_in(queue, admin, status=TicketStatus.PENDING, priority="LOW")
    await ticket_in(queue, admin, status=TicketStatus.PENDING, assignee=agent)
    await ticket_in(queue, admin, status=TicketStatus.RESOLVED, priority="URGENT")
    await ticket_in(queue, admin, status=TicketStatus.CLOSED, priority="URGENT")
    for status in TicketStatus:  # another queue's tickets never count
        await ticket_in(other_queue, admin, status=status, priority="URGENT")

    m = await metrics(api, agent, queue)

    assert {c["status"]: c["count"] for c in m["byStatus"]} == {
        "NEW": 1,
        "OPEN": 1,
        "PENDING": 2,
        "RESOLVED": 1,
        "CLOSED": 1,
    }
    assert {c["priority"]: c["count"] for c in m["byPriority"]} == {
        "LOW": 1,
        "NORMAL": 1,
        "HIGH": 2,
        "URGENT": 0,
    }
    assert (m["open"], m["unassigned"]) == (4, 2)
    assert m["createdLastHour"] == 6


async def test_oldest_open_age_ignores_closed_tickets(api: Api, setup: tuple) -> None:
    admin, agent, _, queue = setup
    _, other_queue = await make_queue(api, admin, "Other")
    await ticket_in(queue, admin, status=TicketStatus.PENDING, created_at=ago(hours=2))
    await ticket_in(queue, admin, status=TicketStatus.OPEN, created_at=ago(minutes=5))
    await ticket_in(queue, admin, status=TicketStatus.CLOSED, created_at=ago(days=3))
    await ticket_in(other_queue, admin, created_at=ago(days=5))

    m = await metrics(api, agent, queue)

    assert 7200 <= m["oldestOpenAgeSeconds"] <= 7205
    assert m["createdLastHour"] == 1


async def test_avg_first_response_over_tickets_answered_in_the_last_day(api: Api, setup: tuple) -> None:
    admin, agent, _, queue = setup
    _, other_queue = await make_queue(api, admin, "Other")
    base = timezone.now() - dt.timedelta(hours=3)
    await ticket_in(queue, admin, created_at=base, first_response_at=base + dt.timedelta(seconds=90))
    await ticket_in(
        queue,
        admin,
        status=TicketStatus.RESOLVED,
        created_at=base - dt.timedelta(hours=30),  # old ticket, answered recently: counts
        first_response_at=base + dt.timedelta(seconds=10),
    )
    await ticket_in(queue, admin)  # unanswered: ignored
    answered_long_ago = ago(hours=25)
    await ticket_in(
        queue,
        admin,
        created_at=answered_long_ago - dt.timedelta(hours=10),
        first_response_at=answered_long_ago,
    )
    await ticket_in(other_queue, admin, created_at=base, first_response_at=base + dt.timedelta(hours=5))

    m = await metrics(api, agent, queue)

    expected = (90 + 30 * 3600 + 10) / 2
    assert m["avgFirstResponseSeconds"] == pytest.approx(expected, abs=1)


async def test_avg_first_response_is_null_when_nothing_answered_in_the_last_day(
    api: Api, setup: tuple
) -> None:
    admin, agent, _, queue = setup
    await ticket_in(queue, admin, created_at=ago(hours=30), first_response_at=ago(hours=26))
    await ticket_in(queue, admin)

    assert (await metrics(api, agent, queue))["avgFirstResponseSeconds"] is None


@pytest.mark.parametrize(
    ("age_minutes", "answered", "status", "expected"),
    [
        (5, False, TicketStatus.NEW, "fine"),
        (40, False, TicketStatus.NEW, "at risk"),  # first response due in 20 minutes
        (40, True, TicketStatus.OPEN, "fine"),  # answered: only resolution counts
        (70, False, TicketStatus.OPEN, "breached"),  # first response overdue
        (100, True, TicketStatus.PENDING, "fine"),
        (220, True, TicketStatus.OPEN, "at risk"),  # resolution due in 20 minutes
        (250, True, TicketStatus.PENDING, "breached"),  # resolution overdue
        (250, True, TicketStatus.RESOLVED, "fine"),  # no longer open
        (250, False, TicketStatus.CLOSED, "fine"),
    ],
)
async def test_sla_breached_and_at_risk(
    api: Api, setup: tuple, age_minutes: int, answered: bool, status: TicketStatus, expected: str
) -> None:
    admin, agent, _, queue = setup
    _, other_queue = await make_queue(api, admin, "Other")
    created = ago(minutes=age_minutes)
    responded = created + dt.timedelta(minutes=1) if answered else None
    await ticket_in(queue, admin, status=status, created_at=created, first_response_at=responded)
    await ticket_in(other_queue, admin, created_at=ago(days=2))  # breached, but elsewhere

    m = await metrics(api, agent, queue)

    assert (m["slaBreached"], m["slaAtRisk"]) == {
        "fine": (0, 0),
        "at risk": (0, 1),
        "breached": (1, 0),
    }[expected]


async def test_sla_figures_add_up_over_a_mixed_queue(api: Api, setup: tuple) -> None:
    admin, agent, _, queue = setup
    await ticket_in(queue, admin, created_at=ago(minutes=45))  # at risk
    await ticket_in(queue, admin, created_at=ago(minutes=50), first_response_at=ago(minutes=49))  # fine
    await ticket_in(queue, admin, created_at=ago(minutes=215), first_response_at=ago(minutes=200))  # at risk
    await ticket_in(queue, admin, created_at=ago(minutes=90))  # breached
    await ticket_in(queue, admin, created_at=ago(hours=9), first_response_at=ago(hours=8))  # breached

    m = await metrics(api, agent, queue)

    assert (m["slaBreached"], m["slaAtRisk"]) == (2, 2)


async def test_created_and_resolved_in_the_last_hour(api: Api, setup: tuple) -> None:
    admin, agent, _, queue = setup
    _, other_queue = await make_queue(api, admin, "Other")
    await ticket_in(queue, admin, created_at=ago(minutes=10))
    await ticket_in(
        queue, admin, created_at=ago(minutes=50), status=TicketStatus.RESOLVED, resolved_at=ago(minutes=5)
    )
    await ticket_in(
        queue, admin, created_at=ago(hours=3), status=TicketStatus.CLOSED, resolved_at=ago(minutes=30)
    )
    await ticket_in(
        queue, admin, created_at=ago(hours=5), status=TicketStatus.RESOLVED, resolved_at=ago(hours=2)
    )
    await ticket_in(other_queue, admin, status=TicketStatus.RESOLVED, resolved_at=ago(minutes=1))

    m = await metrics(api, agent, queue)

    assert (m["createdLastHour"], m["resolvedLastHour"]) == (2, 2)


async def test_metrics_follow_ticket_mutations(api: Api, setup: tuple) -> None:
    _, agent, _, queue = setup
    member = await api.person()
    create = "mutation($i: CreateTicketInput!) { createTicket(input: $i) { id } }"
    ids = [
        (await api.ok(member, create, i={"queueId": queue, "title": f"t{n}"}))["createTicket"]["id"]
        for n in range(3)
    ]
    status = "mutation($id: ID!, $s: TicketStatus!) { setTicketStatus(id: $id, status: $s) { id } }"
    await api.ok(agent, status, id=ids[0], s="RESOLVED")
    assign = "mutation($id: ID!, $a: ID) { assignTicket(id: $id, assigneeId: $a) { id } }"
    await api.ok(agent, assign, id=ids[1], a=agent.id)

    m = await metrics(api, agent, queue)

    assert (m["open"], m["unassigned"], m["createdLastHour"], m["resolvedLastHour"]) == (2, 1, 3, 1)
    assert 0 <= m["oldestOpenAgeSeconds"] <= 5
