"""Subscriptions end to end over real sockets: what each stream delivers, to whom, and resuming."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest

from pulseboard.models import Role
from pulseboard.settings import Settings
from pulseboard.subscriptions.encoding import cursor
from tests.helpers import count_queries
from tests.live import WS, LiveServer, serve, ws

PROJECT = "mutation($n: String!) { createProject(input: {name: $n}) { id } }"
CREATE_TASK = "mutation($p: ID!, $t: String!) { createTask(input: {projectId: $p, title: $t}) { id } }"
TASK_EVENTS = """subscription($p: ID!, $after: String) {
  taskEvents(projectId: $p, after: $after) {
    cursor type occurredAt actor { email } changes { field from to }
    task { id title status position progress completedAt version }
  }
}"""


async def project(live: LiveServer, token: str, name: str = "Board") -> str:
    return (await live.gql(token, PROJECT, n=name))["createProject"]["id"]  # type: ignore[no-any-return]


async def subscribed(client: WS, id: str, query: str, **variables: object) -> None:
    """Subscribe, then prove the server processed it (a ping is answered after it, in order)."""
    await client.subscribe(id, query, **variables)
    await client.send({"type": "ping"})
    assert await client.receive() == {"type": "pong"}
    await asyncio.sleep(0.05)


async def test_task_events_carry_every_change_with_state_actor_and_changes(live: LiveServer) -> None:
    token = live.token("ada@example.test", Role.ADMIN)
    p = await project(live, token)
    async with ws(live, token) as client:
        await subscribed(client, "1", TASK_EVENTS, p=p)
        task = (await live.gql(token, CREATE_TASK, p=p, t="Write docs"))["createTask"]["id"]
        await live.gql(
            token, "mutation($id: ID!) { updateTask(id: $id, input: {progress: 40}) { id } }", id=task
        )
        await live.gql(
            token, "mutation($id: ID!) { moveTask(id: $id, status: IN_REVIEW, position: 0) { id } }", id=task
        )
        await live.gql(token, "mutation($id: ID!) { completeTask(id: $id) { id } }", id=task)
        await live.gql(
            token, 'mutation($id: ID!) { addTaskComment(taskId: $id, body: "done") { id } }', id=task
        )
        await live.gql(token, "mutation($id: ID!) { deleteTask(id: $id) { id } }", id=task)
        events = [(await client.next("1"))["taskEvents"] for _ in range(6)]
    assert [e["type"] for e in events] == ["CREATED", "UPDATED", "MOVED", "COMPLETED", "COMMENTED", "DELETED"]
    assert all(e["actor"] == {"email": "ada@example.test"} for e in events)
    assert [e["task"]["version"] for e in events] == [1, 2, 3, 4, 4, 4]
    assert events[1]["changes"] == [{"field": "progress", "from": "0", "to": "40"}]
    assert {"field": "status", "from": "TODO", "to": "IN_REVIEW"} in events[2]["changes"]
    assert events[3]["task"]["status"] == "DONE" and events[3]["task"]["completedAt"]
    assert [e["cursor"] for e in events] == [cursor(f"project:{p}", seq) for seq in range(1, 7)]


async def test_events_never_leak_across_projects(live: LiveServer) -> None:
    alice, bob = live.token("alice@example.test"), live.token("bob@example.test")
    mine, theirs = await project(live, alice, "A"), await project(live, bob, "B")
    async with ws(live, alice) as client:
        await subscribed(client, "1", TASK_EVENTS, p=mine)
        await live.gql(bob, CREATE_TASK, p=theirs, t="secret")
        await live.gql(alice, CREATE_TASK, p=mine, t="mine")
        assert (await client.next("1"))["taskEvents"]["task"]["title"] == "mine"


async def test_non_member_gets_an_error_and_the_socket_stays_open(live: LiveServer) -> None:
    owner, stranger = live.token("owner@example.test"), live.token("stranger@example.test")
    p = await project(live, owner)
    async with ws(live, stranger) as client:
        await client.subscribe("1", TASK_EVENTS, p=p)
        message = await client.receive()
        assert message["type"] == "error" and message["payload"][0]["extensions"]["code"] == "NOT_FOUND"
        await client.subscribe("2", "{ viewer { email } }")
        assert (await client.next("2"))["viewer"]["email"] == "stranger@example.test"


@pytest.mark.parametrize("after", ["garbage!", cursor("project:999", 1), cursor("queue:1", 1)])
async def test_bad_or_foreign_cursor_is_bad_user_input(live: LiveServer, after: str) -> None:
    token = live.token("a@example.test")
    p = await project(live, token)
    async with ws(live, token) as client:
        await client.subscribe("1", TASK_EVENTS, p=p, after=after)
        message = await client.receive()
        assert message["type"] == "error"
        assert message["payload"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "after"}
        await client.send({"type": "ping"})
        assert await client.receive() == {"type": "pong"}


async def test_resume_replays_exactly_the_missed_events_then_goes_live(live: LiveServer) -> None:
    token = live.token("a@example.test")
    p = await project(live, token)
    async with ws(live, token) as client:
        await subscribed(client, "1", TASK_EVENTS, p=p)
        await live.gql(token, CREATE_TASK, p=p, t="seen")
        last = (await client.next("1"))["taskEvents"]["cursor"]
    for i in range(50):
        await live.gql(token, CREATE_TASK, p=p, t=f"missed {i}")
    async with ws(live, token) as client:
        await subscribed(client, "1", TASK_EVENTS, p=p, after=last)
        replayed = [(await client.next("1"))["taskEvents"]["task"]["title"] for _ in range(50)]
        assert replayed == [f"missed {i}" for i in range(50)]
        await live.gql(token, CREATE_TASK, p=p, t="live")
        assert (await client.next("1"))["taskEvents"]["task"]["title"] == "live"
        await client.send({"type": "ping"})
        assert await client.receive() == {"type": "pong"}  # no duplicate at the seam


async def test_concurrent_mutations_arrive_in_seq_order_without_gaps(live: LiveServer) -> None:
    token = live.token("a@example.test")
    p = await project(live, token)
    async with ws(live, token) as one, ws(live, token) as two:
        await subscribed(one, "1", TASK_EVENTS, p=p)
        await subscribed(two, "1", TASK_EVENTS, p=p)
        await asyncio.gather(*(live.gql(token, CREATE_TASK, p=p, t=f"t{i}") for i in range(20)))
        for client in (one, two):
            cursors = [(await client.next("1"))["taskEvents"]["cursor"] for _ in range(20)]
            assert cursors == [cursor(f"project:{p}", seq) for seq in range(1, 21)]


ASSIGNED = """subscription($u: ID!, $after: String) {
  ticketAssigned(userId: $u, after: $after) {
    cursor ticket { id title assignee { email } } assignee { name email } previousAssignee { name email }
    assignedBy { name email } occurredAt
  }
}"""


async def support(live: LiveServer) -> tuple[str, str, str, str]:
    """An admin's token, a queue, and two agents of its team (token of the first, both ids)."""
    admin = live.token("admin@example.test", Role.ADMIN)
    team = (await live.gql(admin, 'mutation { createTeam(input: {name: "Support"}) { id } }'))["createTeam"][
        "id"
    ]
    queue = (
        await live.gql(
            admin,
            'mutation($t: ID!) { createQueue(input: {teamId: $t, name: "Q", '
            "slaFirstResponseMinutes: 60, slaResolutionMinutes: 600}) { id } }",
            t=team,
        )
    )["createQueue"]["id"]
    agent = live.token("sam@example.test", Role.AGENT)
    sam = (await live.gql(agent, "{ viewer { id } }"))["viewer"]["id"]
    kim = (await live.gql(live.token("kim@example.test", Role.AGENT), "{ viewer { id } }"))["viewer"]["id"]
    for user in (sam, kim):
        await live.gql(
            admin,
            "mutation($t: ID!, $u: ID!) { addTeamMember(teamId: $t, userId: $u) { id } }",
            t=team,
            u=user,
        )
    return admin, queue, agent, sam + "," + kim


async def new_ticket(live: LiveServer, token: str, queue: str, title: str) -> str:
    query = "mutation($q: ID!, $t: String!) { createTicket(input: {queueId: $q, title: $t}) { id } }"
    return (await live.gql(token, query, q=queue, t=title))["createTicket"]["id"]  # type: ignore[no-any-return]


async def test_ticket_assigned_streams_assignments_to_that_user_only(live: LiveServer) -> None:
    admin, queue, agent, ids = await support(live)
    sam, kim = ids.split(",")
    first, second = await new_ticket(live, admin, queue, "one"), await new_ticket(live, admin, queue, "two")
    assign = "mutation($id: ID!, $u: ID) { assignTicket(id: $id, assigneeId: $u) { id } }"
    async with ws(live, agent) as client:
        await subscribed(client, "1", ASSIGNED, u=sam)
        await live.gql(admin, assign, id=first, u=kim)
        await live.gql(admin, assign, id=first, u=sam)
        bulk = (
            "mutation($ids: [ID!]!, $u: ID) { bulkUpdateTickets(ids: $ids, input: {assigneeId: $u}) { id } }"
        )
        await live.gql(admin, bulk, ids=[second], u=sam)
        one = (await client.next("1"))["ticketAssigned"]
        two = (await client.next("1"))["ticketAssigned"]
    # Emails are the user's own (and admins') to see: sam sees his, not kim's or the admin's.
    assert one["ticket"]["title"] == "one"
    assert one["assignee"] == {"name": "sam", "email": "sam@example.test"}
    assert one["previousAssignee"] == {"name": "kim", "email": None}
    assert one["assignedBy"] == {"name": "admin", "email": None}
    assert two["ticket"]["title"] == "two" and two["previousAssignee"] is None


async def test_ticket_assigned_is_forbidden_for_another_user(live: LiveServer) -> None:
    _, _, agent, ids = await support(live)
    async with ws(live, agent) as client:
        await client.subscribe("1", ASSIGNED, u=ids.split(",")[1])
        message = await client.receive()
        assert message["type"] == "error" and message["payload"][0]["extensions"]["code"] == "FORBIDDEN"


NOTIFICATIONS = """subscription($after: String) {
  notifications(after: $after) { cursor type notifications { id type title readAt } }
}"""


async def test_notifications_stream_created_read_and_deleted(live: LiveServer) -> None:
    owner, mia = live.token("owner@example.test"), live.token("mia@example.test")
    p = await project(live, owner)
    mia_id = (await live.gql(mia, "{ viewer { id } }"))["viewer"]["id"]
    await live.gql(
        live.token("admin@example.test", Role.ADMIN),  # an admin may add anyone
        "mutation($p: ID!, $u: ID!) { addProjectMember(projectId: $p, userId: $u) { id } }",
        p=p,
        u=mia_id,
    )
    task = (await live.gql(owner, CREATE_TASK, p=p, t="Ship"))["createTask"]["id"]
    async with ws(live, mia) as client:
        await subscribed(client, "1", NOTIFICATIONS)
        await live.gql(
            owner,
            "mutation($id: ID!, $u: ID) { assignTask(id: $id, assigneeId: $u) { id } }",
            id=task,
            u=mia_id,
        )
        created = (await client.next("1"))["notifications"]
        assert created["type"] == "CREATED"
        [notification] = created["notifications"]
        assert notification["type"] == "TASK_ASSIGNED" and notification["readAt"] is None
        await live.gql(
            mia,
            "mutation($ids: [ID!]!) { markNotificationsRead(ids: $ids) { id } }",
            ids=[notification["id"]],
        )
        read = (await client.next("1"))["notifications"]
        assert read["type"] == "READ" and read["notifications"][0]["readAt"]
        await live.gql(
            mia, "mutation($id: ID!) { deleteNotification(id: $id) { id } }", id=notification["id"]
        )
        deleted = (await client.next("1"))["notifications"]
        assert deleted["type"] == "DELETED" and deleted["notifications"][0]["id"] == notification["id"]


METRICS = """subscription($q: ID!) {
  queueMetrics(queueId: $q) { open unassigned byStatus { status count } computedAt }
}"""


@pytest.fixture
async def ticking(settings: Settings) -> AsyncIterator[LiveServer]:
    async with serve(dataclasses.replace(settings, metrics_interval_seconds=0.5)) as server:
        yield server


async def test_queue_metrics_snapshot_at_once_then_coalesced_and_exact(live: LiveServer) -> None:
    admin, queue, _, _ = await support(live)
    await new_ticket(live, admin, queue, "before")
    async with ws(live, admin) as client:
        await client.subscribe("m", METRICS, q=queue)
        first = (await client.next("m"))["queueMetrics"]
        assert first["open"] == 1 and first["unassigned"] == 1
        await asyncio.gather(*(new_ticket(live, admin, queue, f"burst {i}") for i in range(100)))
        snapshots = [(await client.next("m"))["queueMetrics"]]
        while snapshots[-1]["open"] != 101:
            snapshots.append((await client.next("m"))["queueMetrics"])
        assert len(snapshots) <= 10, f"{len(snapshots)} snapshots for a burst of 100"
        assert {s["status"]: s["count"] for s in snapshots[-1]["byStatus"]}["NEW"] == 101


async def test_queue_metrics_periodic_refresh_only_when_a_figure_changes(ticking: LiveServer) -> None:
    admin, queue, _, _ = await support(ticking)
    async with ws(ticking, admin) as client:
        await client.subscribe("m", METRICS, q=queue)
        assert (await client.next("m"))["queueMetrics"]["open"] == 0
        await client.send({"type": "ping"})
        await asyncio.sleep(1.6)  # three ticks with nothing changed: nothing is sent
        assert await client.receive() == {"type": "pong"}
    oldest = "subscription($q: ID!) { queueMetrics(queueId: $q) { oldestOpenAgeSeconds } }"
    await new_ticket(ticking, admin, queue, "ageing")
    async with ws(ticking, admin) as client:
        await client.subscribe("m", oldest, q=queue)
        ages = [(await client.next("m", within=5))["queueMetrics"]["oldestOpenAgeSeconds"] for _ in range(3)]
        assert ages == sorted(ages) and ages[-1] > ages[0]


async def test_queue_metrics_are_for_the_queues_agents(live: LiveServer) -> None:
    _, queue, _, _ = await support(live)
    async with ws(live, live.token("member@example.test")) as client:
        await client.subscribe("m", METRICS, q=queue)
        message = await client.receive()
        assert message["type"] == "error" and message["payload"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_nothing_is_left_behind_after_1000_subscribe_complete_cycles(live: LiveServer) -> None:
    token = live.token("a@example.test")
    p = await project(live, token)
    before = len(asyncio.all_tasks())
    async with ws(live, token) as client:
        for i in range(1000):
            await client.subscribe(str(i), TASK_EVENTS, p=p)
            await client.complete(str(i))
        await client.send({"type": "ping"})
        assert await client.receive() == {"type": "pong"}
        await subscribed(client, "last", TASK_EVENTS, p=p)
        assert live.hub.topics == {f"project:{p}": 1}
    for _ in range(100):
        if not live.hub.topics and len(asyncio.all_tasks()) <= before:
            break
        await asyncio.sleep(0.05)
    assert live.hub.topics == {}
    assert live.hub.metrics.watched == {}
    assert len(asyncio.all_tasks()) <= before


async def test_disconnect_cleans_up_every_stream(live: LiveServer) -> None:
    admin, queue, _, _ = await support(live)
    p = await project(live, admin)
    async with ws(live, admin) as client:
        await subscribed(client, "t", TASK_EVENTS, p=p)
        await subscribed(client, "n", NOTIFICATIONS)
        await client.subscribe("m", METRICS, q=queue)
        await client.next("m")
        assert len(live.hub.topics) == 3
    for _ in range(100):
        if not live.hub.topics:
            break
        await asyncio.sleep(0.05)
    assert live.hub.topics == {}
    assert live.hub.metrics.watched == {}


async def test_an_events_related_rows_are_read_once_per_worker_not_per_subscriber(live: LiveServer) -> None:
    token = live.token("ada@example.test", Role.ADMIN)
    p = await project(live, token)
    query = (
        "subscription($p: ID!) { taskEvents(projectId: $p) { actor { email } task { createdBy { email } } } }"
    )
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(ws(live, token)) for _ in range(5)]
        for client in clients:
            await subscribed(client, "1", query, p=p)
        with count_queries() as statements:
            await live.gql(token, CREATE_TASK, p=p, t="shared")
            for client in clients:
                event = (await client.next("1"))["taskEvents"]
                assert event["actor"] == {"email": "ada@example.test"}
                assert event["task"]["createdBy"] == {"email": "ada@example.test"}
    user_lookups = [s for s in statements if 'FROM "users"' in s and '"id" IN' in s]
    assert len(user_lookups) == 1, user_lookups


async def test_a_cursor_ahead_of_the_stream_is_bad_user_input_and_the_socket_stays_open(
    live: LiveServer,
) -> None:
    """A cursor past the topic's head names an event that never happened: refused, rather than a
    stream that stays silent until the topic catches up and then skips what lies between."""
    token = live.token("a@example.test")
    p = await project(live, token)
    await live.gql(token, CREATE_TASK, p=p, t="one")
    async with ws(live, token) as client:
        await client.subscribe("1", TASK_EVENTS, p=p, after=cursor(f"project:{p}", 2))
        message = await client.receive()
        assert message["type"] == "error" and message["id"] == "1"
        assert message["payload"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "after"}
        # The socket stays open, and the head itself is a cursor like any other.
        await subscribed(client, "2", TASK_EVENTS, p=p, after=cursor(f"project:{p}", 1))
        await live.gql(token, CREATE_TASK, p=p, t="two")
        event = (await client.next("2"))["taskEvents"]
        assert (event["task"]["title"], event["cursor"]) == ("two", cursor(f"project:{p}", 2))


async def test_cursors_ahead_of_a_users_streams_are_bad_user_input(live: LiveServer) -> None:
    admin, _, agent, ids = await support(live)
    sam = ids.split(",")[0]
    member = live.token("mia@example.test")
    mia = (await live.gql(member, "{ viewer { id } }"))["viewer"]["id"]
    streams = [
        (agent, ASSIGNED, {"u": sam}, f"user:{sam}:tickets"),  # an agent: access as of now
        (admin, ASSIGNED, {"u": sam}, f"user:{sam}:tickets"),  # an admin: sees every ticket
        (member, NOTIFICATIONS, {}, f"user:{mia}:notifications"),
    ]
    async with ws(live, agent) as sams, ws(live, admin) as admins, ws(live, member) as mias:
        clients = {agent: sams, admin: admins, member: mias}
        for n, (who, query, variables, topic) in enumerate(streams):
            client = clients[who]
            await client.subscribe(str(n), query, after=cursor(topic, 1), **variables)
            message = await client.receive()
            assert message["type"] == "error" and message["id"] == str(n), message
            assert message["payload"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "after"}
            await subscribed(client, f"{n}-head", query, after=cursor(topic, 0), **variables)
