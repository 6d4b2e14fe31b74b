"""Live ticket streams over real sockets: ticketEvents (a queue's changes, for its agents) and
ticketUpdates (one ticket's, for whoever may see it): every kind of change in order, resuming
with `after`, who may subscribe, bad cursors, and delivery across workers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import pytest

from pulseboard.models import Role, User
from pulseboard.resolvers.context import Context
from pulseboard.schema import build_schema
from pulseboard.schema.subscription import _ticket_event
from pulseboard.settings import Settings
from pulseboard.subscriptions.encoding import cursor
from tests.conftest import BROADCAST_URL, ON_POSTGRES
from tests.helpers import Api
from tests.live import TIMEOUT, WS, LiveServer, worker_processes, ws
from tests.test_cohorts import Documents, _compare
from tests.test_roles import ago, token_at
from tests.test_subscriptions import subscribed
from tests.test_tickets import make_desk

FIELDS = """
  cursor type occurredAt actor { name email } changes { field from to }
  ticket { id title status priority version firstResponseAt assignee { id name email } }
  comment { body author { name } }
"""
EVENTS = (
    f"subscription($q: ID!, $after: String) {{ ticketEvents(queueId: $q, after: $after) {{ {FIELDS} }} }}"
)
UPDATES = f"""subscription($t: ID!, $after: String) {{
  ticketUpdates(ticketId: $t, after: $after) {{ {FIELDS} }}
}}"""
CREATE = "mutation($q: ID!, $t: String!) { createTicket(input: {queueId: $q, title: $t}) { id } }"
UPDATE = "mutation($id: ID!, $t: String!) { updateTicket(id: $id, input: {title: $t}) { id } }"
ASSIGN = "mutation($id: ID!, $a: ID) { assignTicket(id: $id, assigneeId: $a) { id } }"
STATUS = "mutation($id: ID!, $s: TicketStatus!) { setTicketStatus(id: $id, status: $s) { id } }"
PRIORITY = "mutation($id: ID!, $p: TicketPriority!) { setTicketPriority(id: $id, priority: $p) { id } }"
COMMENT = "mutation($id: ID!, $b: String!) { addTicketComment(ticketId: $id, body: $b) { id } }"
BULK = """mutation($ids: [ID!]!, $s: TicketStatus, $p: TicketPriority) {
  bulkUpdateTickets(ids: $ids, input: {status: $s, priority: $p}) { id }
}"""


@dataclass(frozen=True)
class Desk:
    """A queue, an agent of its team, a member who files tickets there, and an admin (tokens)."""

    admin: str
    agent: str
    agent_id: str
    requester: str
    queue: str


async def user_id(live: LiveServer, token: str) -> str:
    return (await live.gql(token, "{ viewer { id } }"))["viewer"]["id"]  # type: ignore[no-any-return]


async def queue_of_own_team(live: LiveServer, admin: str, agent: str, name: str) -> str:
    """A new queue of a new team whose one agent is `agent`."""
    team = (await live.gql(admin, "mutation($n: String!) { createTeam(input: {name: $n}) { id } }", n=name))[
        "createTeam"
    ]["id"]
    await live.gql(
        admin,
        "mutation($t: ID!, $u: ID!) { addTeamMember(teamId: $t, userId: $u) { id } }",
        t=team,
        u=await user_id(live, agent),
    )
    created = await live.gql(
        admin,
        "mutation($t: ID!, $n: String!) { createQueue(input: {teamId: $t, name: $n, "
        "slaFirstResponseMinutes: 60, slaResolutionMinutes: 600}) { id } }",
        t=team,
        n=name,
    )
    return created["createQueue"]["id"]  # type: ignore[no-any-return]


async def desk(live: LiveServer) -> Desk:
    admin = live.token("admin@example.test", Role.ADMIN)
    agent = live.token("sam@example.test", Role.AGENT)
    queue = await queue_of_own_team(live, admin, agent, "Support")
    requester = live.token("rita@example.test")
    return Desk(admin, agent, await user_id(live, agent), requester, queue)


async def new_ticket(live: LiveServer, token: str, queue: str, title: str = "Printer on fire") -> str:
    return (await live.gql(token, CREATE, q=queue, t=title))["createTicket"]["id"]  # type: ignore[no-any-return]


async def quiet(client: WS) -> None:
    """Nothing more is on its way: a ping sent now is answered before any later event."""
    await client.send({"type": "ping"})
    assert await client.receive() == {"type": "pong"}


async def refusal(client: WS, id: str, query: str, **variables: Any) -> dict[str, Any]:
    """The extensions of the error that refuses the subscription (the socket stays open)."""
    await client.subscribe(id, query, **variables)
    message = await client.receive()
    assert message["type"] == "error" and message["id"] == id, message
    return message["payload"][0]["extensions"]  # type: ignore[no-any-return]


async def every_kind_of_change(live: LiveServer, d: Desk, ticket: str) -> None:
    """UPDATED, ASSIGNED, STATUS_CHANGED, PRIORITY_CHANGED and COMMENTED, each once, by the agent."""
    await live.gql(d.agent, UPDATE, id=ticket, t="Printer still on fire")
    await live.gql(d.agent, ASSIGN, id=ticket, a=d.agent_id)
    await live.gql(d.agent, STATUS, id=ticket, s="OPEN")
    await live.gql(d.agent, PRIORITY, id=ticket, p="HIGH")
    await live.gql(d.agent, COMMENT, id=ticket, b="On it")


def check_every_kind_of_change(events: list[dict[str, Any]], ticket: str, topic: str) -> None:
    """The events of a ticket filed by rita, then every_kind_of_change(): as seen by rita."""
    assert [e["type"] for e in events] == [
        "CREATED",
        "UPDATED",
        "ASSIGNED",
        "STATUS_CHANGED",
        "PRIORITY_CHANGED",
        "COMMENTED",
    ]
    assert [e["cursor"] for e in events] == [cursor(topic, seq) for seq in range(1, 7)]
    assert {e["ticket"]["id"] for e in events} == {ticket}
    # The ticket as it was right after each change.
    states = [(e["ticket"]["title"], e["ticket"]["status"], e["ticket"]["priority"]) for e in events]
    assert states == [
        ("Printer on fire", "NEW", "NORMAL"),
        ("Printer still on fire", "NEW", "NORMAL"),
        ("Printer still on fire", "NEW", "NORMAL"),
        ("Printer still on fire", "OPEN", "NORMAL"),
        ("Printer still on fire", "OPEN", "HIGH"),
        ("Printer still on fire", "OPEN", "HIGH"),
    ]
    assert [e["ticket"]["version"] for e in events] == [1, 2, 3, 4, 5, 6]  # the comment set firstResponseAt
    assert [e["ticket"]["assignee"] is None for e in events] == [True, True, False, False, False, False]
    assert events[2]["ticket"]["assignee"]["name"] == "sam"
    assert [e["ticket"]["firstResponseAt"] is None for e in events] == [True] * 5 + [False]
    assert [e["changes"] for e in events] == [
        [],
        [{"field": "title", "from": "Printer on fire", "to": "Printer still on fire"}],
        [{"field": "assigneeId", "from": None, "to": events[2]["ticket"]["assignee"]["id"]}],
        [{"field": "status", "from": "NEW", "to": "OPEN"}],
        [{"field": "priority", "from": "NORMAL", "to": "HIGH"}],
        [],
    ]
    assert [e["actor"]["name"] for e in events] == ["rita"] + ["sam"] * 5
    assert [e["comment"] for e in events] == [None] * 5 + [{"body": "On it", "author": {"name": "sam"}}]
    assert all(e["occurredAt"] for e in events)


async def test_ticket_events_carry_every_kind_of_change_in_order(live: LiveServer) -> None:
    d = await desk(live)
    async with ws(live, d.agent) as client:
        await subscribed(client, "1", EVENTS, q=d.queue)
        ticket = await new_ticket(live, d.requester, d.queue)
        await every_kind_of_change(live, d, ticket)
        events = [(await client.next("1"))["ticketEvents"] for _ in range(6)]
        await quiet(client)
    check_every_kind_of_change(events, ticket, f"queue:{d.queue}")
    # Emails are the user's own (and admins') to see: sam sees his own, not rita's.
    assert events[0]["actor"]["email"] is None
    assert events[2]["ticket"]["assignee"]["email"] == "sam@example.test"


async def test_bulk_changes_arrive_in_order_on_both_streams(live: LiveServer) -> None:
    """One transaction, several tickets, several changes each: in the order they were made."""
    d = await desk(live)
    one, two = (
        await new_ticket(live, d.requester, d.queue, "one"),
        await new_ticket(live, d.requester, d.queue, "two"),
    )
    async with ws(live, d.agent) as queue_client, ws(live, d.requester) as ticket_client:
        await subscribed(queue_client, "1", EVENTS, q=d.queue)
        await subscribed(ticket_client, "1", UPDATES, t=two)
        await live.gql(d.agent, BULK, ids=[one, two], s="PENDING", p="URGENT")
        queued = [(await queue_client.next("1"))["ticketEvents"] for _ in range(4)]
        updated = [(await ticket_client.next("1"))["ticketUpdates"] for _ in range(2)]
        await quiet(queue_client)
        await quiet(ticket_client)
    assert [(e["ticket"]["title"], e["type"]) for e in queued] == [
        ("one", "STATUS_CHANGED"),
        ("one", "PRIORITY_CHANGED"),
        ("two", "STATUS_CHANGED"),
        ("two", "PRIORITY_CHANGED"),
    ]
    assert [e["cursor"] for e in queued] == [cursor(f"queue:{d.queue}", seq) for seq in range(3, 7)]
    assert [(e["type"], e["ticket"]["status"], e["ticket"]["priority"]) for e in updated] == [
        ("STATUS_CHANGED", "PENDING", "NORMAL"),
        ("PRIORITY_CHANGED", "PENDING", "URGENT"),
    ]
    assert [e["cursor"] for e in updated] == [cursor(f"ticket:{two}", 2), cursor(f"ticket:{two}", 3)]


async def test_ticket_updates_show_that_ticket_only_with_cursors_of_its_own(live: LiveServer) -> None:
    d = await desk(live)
    other = await new_ticket(live, d.requester, d.queue, "another one")
    ticket = await new_ticket(live, d.requester, d.queue)
    async with ws(live, d.requester) as client:
        await subscribed(client, "1", UPDATES, t=ticket, after=cursor(f"ticket:{ticket}", 0))
        for changed in (other, ticket):  # the other ticket changes too, first
            await every_kind_of_change(live, d, changed)
        events = [(await client.next("1"))["ticketUpdates"] for _ in range(6)]
        await quiet(client)
    check_every_kind_of_change(events, ticket, f"ticket:{ticket}")
    # The requester sees what the ticket query shows them: the agent's comment, name, no email.
    assert events[2]["ticket"]["assignee"]["email"] is None
    assert events[0]["actor"]["email"] == "rita@example.test"


@pytest.mark.parametrize("stream", ["ticketEvents", "ticketUpdates"])
async def test_resuming_with_after_delivers_exactly_the_missed_events_once(
    live: LiveServer, stream: str
) -> None:
    d = await desk(live)
    ticket = await new_ticket(live, d.requester, d.queue)
    query, variables = (EVENTS, {"q": d.queue}) if stream == "ticketEvents" else (UPDATES, {"t": ticket})
    async with ws(live, d.agent) as client:
        await subscribed(client, "1", query, after=None, **variables)
        await live.gql(d.agent, UPDATE, id=ticket, t="seen")
        last = (await client.next("1"))[stream]["cursor"]
    for title in ("missed 1", "missed 2", "missed 3"):  # while the subscriber is away
        await live.gql(d.agent, UPDATE, id=ticket, t=title)
    async with ws(live, d.agent) as client:
        await subscribed(client, "1", query, after=last, **variables)
        await live.gql(d.agent, UPDATE, id=ticket, t="live")
        titles = [(await client.next("1"))[stream]["ticket"]["title"] for _ in range(4)]
        await quiet(client)  # and nothing twice
    assert titles == ["missed 1", "missed 2", "missed 3", "live"]


async def test_who_may_subscribe_to_each_stream(live: LiveServer) -> None:
    d = await desk(live)
    ticket = await new_ticket(live, d.requester, d.queue)
    outsider = live.token("otto@example.test", Role.AGENT)  # an agent of another team
    await queue_of_own_team(live, d.admin, outsider, "Elsewhere")
    member = live.token("mia@example.test")  # a member who did not file it
    refused = [
        (outsider, EVENTS, {"q": d.queue}, "FORBIDDEN"),  # as queueMetrics refuses it
        (d.requester, EVENTS, {"q": d.queue}, "FORBIDDEN"),
        (d.agent, EVENTS, {"q": "999999"}, "NOT_FOUND"),
        (d.agent, EVENTS, {"q": "nope"}, "NOT_FOUND"),
        (outsider, UPDATES, {"t": ticket}, "NOT_FOUND"),  # as ticket(id) answers them
        (member, UPDATES, {"t": ticket}, "NOT_FOUND"),
        (d.agent, UPDATES, {"t": "999999"}, "NOT_FOUND"),
    ]
    for n, (who, query, variables, expected) in enumerate(refused):
        async with ws(live, who) as client:
            assert (await refusal(client, str(n), query, **variables))["code"] == expected, (n, variables)
    allowed = [(d.agent, EVENTS, {"q": d.queue}), (d.admin, EVENTS, {"q": d.queue})] + [
        (who, UPDATES, {"t": ticket}) for who in (d.requester, d.agent, d.admin)
    ]
    async with ws(live, d.agent) as a, ws(live, d.admin) as b, ws(live, d.requester) as c:
        clients = {d.agent: a, d.admin: b, d.requester: c}
        for n, (who, query, variables) in enumerate(allowed):
            await subscribed(clients[who], str(n), query, **variables)
        await live.gql(d.requester, COMMENT, id=ticket, b="Any news?")
        received = {}
        for client in (a, b, b, a, c):  # agent: ids 0 and 3, admin: 1 and 4, requester: 2
            message = await client.receive()
            assert message["type"] == "next" and "errors" not in message["payload"], message
            received[message["id"]] = next(iter(message["payload"]["data"].values()))
    assert sorted(received) == ["0", "1", "2", "3", "4"]
    assert {e["comment"]["body"] for e in received.values()} == {"Any news?"}


async def test_an_agent_who_loses_the_role_is_closed_out_and_refused_as_of_now(live: LiveServer) -> None:
    """Team membership is never withdrawn (no mutation does it); the role is, and it ends the socket."""
    d = await desk(live)
    ticket = await new_ticket(live, d.requester, d.queue)
    old_agent = token_at(live.settings, "sam@example.test", Role.AGENT, ago(60))
    async with ws(live, old_agent) as client:
        await subscribed(client, "1", EVENTS, q=d.queue)
        await subscribed(client, "2", UPDATES, t=ticket)
        member = token_at(live.settings, "sam@example.test", Role.MEMBER, ago(0))
        await live.gql(member, "{ viewer { id } }")  # a newer token says MEMBER
        assert await client.closed(within=1.0) == (4403, "Access changed")
    async with ws(live, old_agent) as client:  # reconnecting with the token it had
        assert (await refusal(client, "1", EVENTS, q=d.queue))["code"] == "FORBIDDEN"
        assert (await refusal(client, "2", UPDATES, t=ticket))["code"] == "NOT_FOUND"


async def test_bad_cursors_are_bad_user_input_and_the_socket_stays_open(live: LiveServer) -> None:
    d = await desk(live)
    ticket = await new_ticket(live, d.requester, d.queue)
    queue_topic, ticket_topic = f"queue:{d.queue}", f"ticket:{ticket}"
    bad = [
        (EVENTS, {"q": d.queue}, "not a cursor"),
        (EVENTS, {"q": d.queue}, cursor(ticket_topic, 1)),  # the ticket's stream, not the queue's
        (EVENTS, {"q": d.queue}, cursor("queue:999999", 1)),  # another queue's
        (EVENTS, {"q": d.queue}, cursor(queue_topic, 2)),  # ahead of the stream
        (UPDATES, {"t": ticket}, "not a cursor"),
        (UPDATES, {"t": ticket}, cursor(queue_topic, 1)),  # the queue's stream, not the ticket's
        (UPDATES, {"t": ticket}, cursor("project:1", 1)),
        (UPDATES, {"t": ticket}, cursor(ticket_topic, 2)),  # ahead of the stream
    ]
    async with ws(live, d.agent) as client:
        for n, (query, variables, after) in enumerate(bad):
            extensions = await refusal(client, str(n), query, after=after, **variables)
            assert extensions == {"code": "BAD_USER_INPUT", "field": "after"}, (n, after)
        # Still open, and the heads themselves are cursors like any other.
        await subscribed(client, "q", EVENTS, q=d.queue, after=cursor(queue_topic, 1))
        await subscribed(client, "t", UPDATES, t=ticket, after=cursor(ticket_topic, 1))
        await live.gql(d.agent, STATUS, id=ticket, s="OPEN")
        by_id = {}
        for _ in range(2):
            message = await client.receive()
            by_id[message["id"]] = next(iter(message["payload"]["data"].values()))["cursor"]
    assert by_id == {"q": cursor(queue_topic, 2), "t": cursor(ticket_topic, 2)}


async def test_payloads_shared_by_a_cohort_equal_each_viewers_own_execution(api: Api) -> None:
    """ticketUpdates' subscribers (requester, agent, admin) share one topic: the payload a cohort
    renders once is, for each of them, what executing the document for them alone gives."""
    d = await make_desk(api)
    ticket = (await api.ok(d.requester, CREATE, q=d.queue, t="Help"))["createTicket"]["id"]
    await api.ok(d.agent, ASSIGN, id=ticket, a=d.agent.id)
    await api.ok(d.agent, COMMENT, id=ticket, b="Looking")
    await api.ok(d.requester, COMMENT, id=ticket, b="Thanks")
    await api.ok(d.agent, STATUS, id=ticket, s="RESOLVED")
    schema = api.app.state.planner.schema
    generator = Documents(schema, seed=20261203)
    selections = [generator.selection(schema.get_type("TicketEvent")) for _ in range(30)]
    updates = [f"subscription($t: ID!) {{ ticketUpdates(ticketId: $t) {{ {s} }} }}" for s in selections]
    events = [f"subscription($q: ID!) {{ ticketEvents(queueId: $q) {{ {s} }} }}" for s in selections]
    people = [d.requester, d.agent, d.admin]
    compared = await _compare(api, updates, {"t": ticket}, people, f"ticket:{ticket}", _ticket_event)
    compared += await _compare(api, events, {"q": d.queue}, people[1:], f"queue:{d.queue}", _ticket_event)
    assert compared >= 30 * 5 * 5


async def test_the_strawberry_path_streams_and_refuses_alike(live: LiveServer) -> None:
    """schema.subscribe() (per-subscriber execution, not the delivery engine) serves the fields too."""
    d = await desk(live)
    ticket = await new_ticket(live, d.requester, d.queue)
    schema = build_schema(live.settings)
    context = Context(live.settings, viewer=await User.get(id=int(await user_id(live, d.requester))))
    refused: Any = await schema.subscribe(EVENTS, variable_values={"q": d.queue}, context_value=context)
    async with aclosing(refused):
        first = await asyncio.wait_for(anext(refused), TIMEOUT)
        assert [e.extensions["code"] for e in first.errors] == ["FORBIDDEN"]
    variables = {"t": ticket, "after": cursor(f"ticket:{ticket}", 0)}
    stream: Any = await schema.subscribe(UPDATES, variable_values=variables, context_value=context)
    async with aclosing(stream):
        await live.gql(d.agent, COMMENT, id=ticket, b="Hello")
        events = [(await asyncio.wait_for(anext(stream), TIMEOUT)).data["ticketUpdates"] for _ in range(2)]
    assert [(e["type"], e["cursor"]) for e in events] == [
        ("CREATED", cursor(f"ticket:{ticket}", 1)),
        ("COMMENTED", cursor(f"ticket:{ticket}", 2)),
    ]
    assert events[1]["comment"] == {"body": "Hello", "author": {"name": "sam"}}


@pytest.fixture
def workers(settings: Settings) -> Iterator[tuple[LiveServer, LiveServer]]:
    with worker_processes(settings, 2) as (one, two):
        yield one, two


@pytest.mark.skipif(
    not (ON_POSTGRES and BROADCAST_URL.startswith("redis")),
    reason="several workers need PostgreSQL and Redis (the suite's second pass)",
)
async def test_a_change_through_one_worker_reaches_subscribers_on_the_other(
    workers: tuple[LiveServer, LiveServer],
) -> None:
    one, two = workers
    d = await desk(one)
    ticket = await new_ticket(one, d.requester, d.queue)
    async with ws(two, d.agent) as agent, ws(two, d.requester) as requester:
        await subscribed(agent, "1", EVENTS, q=d.queue)
        await subscribed(requester, "1", UPDATES, t=ticket)
        await asyncio.sleep(0.3)  # the subscribe reached Redis
        await one.gql(d.agent, STATUS, id=ticket, s="OPEN")
        await two.gql(d.agent, PRIORITY, id=ticket, p="LOW")
        queued = [(await agent.next("1"))["ticketEvents"] for _ in range(2)]
        updated = [(await requester.next("1"))["ticketUpdates"] for _ in range(2)]
    assert [e["cursor"] for e in queued] == [cursor(f"queue:{d.queue}", seq) for seq in (2, 3)]
    assert [e["cursor"] for e in updated] == [cursor(f"ticket:{ticket}", seq) for seq in (2, 3)]
    assert (
        [e["type"] for e in queued] == [e["type"] for e in updated] == ["STATUS_CHANGED", "PRIORITY_CHANGED"]
    )
