"""The delivery engine: cohort delivery equals per-subscriber execution byte for byte, events are
executed once per cohort, and nothing is left behind."""

from __future__ import annotations

import asyncio
import random
from inspect import isawaitable
from typing import Any

from graphql import GraphQLNonNull, GraphQLObjectType, execute, get_named_type, parse

from pulseboard.models import Event, Role, User
from pulseboard.resolvers.context import Context
from pulseboard.resolvers.loaders import Loaders
from pulseboard.schema.delivery import payload_json
from pulseboard.schema.subscription import _assignment, _task_event
from pulseboard.subscriptions.encoding import from_row
from pulseboard.subscriptions.outbox import OPEN
from tests.helpers import Api, Person, count_queries
from tests.live import LiveServer, ws
from tests.test_tickets import make_desk

PROJECT = 'mutation { createProject(input: {name: "Cohorts"}) { id } }'
MEMBER = "mutation($p: ID!, $u: ID!) { addProjectMember(projectId: $p, userId: $u) { id } }"
TASK = 'mutation($p: ID!, $a: ID) { createTask(input: {projectId: $p, title: "T", assigneeId: $a}) { id } }'


class Documents:
    """Random selections over a type of the schema: aliases, inline fragments, pages, nesting."""

    def __init__(self, schema: Any, seed: int) -> None:
        self.schema = schema
        self.rng = random.Random(seed)
        self.aliases = 0

    def selection(self, type_: GraphQLObjectType, depth: int = 0) -> str:
        rng = self.rng
        names = sorted(type_.fields)
        parts = []
        for name in rng.sample(names, k=rng.randint(1, min(5, len(names)))):
            field = type_.fields[name]
            if any(isinstance(a.type, GraphQLNonNull) for a in field.args.values()):
                continue
            arguments = f"(first: {rng.randint(0, 3)})" if "first" in field.args else ""
            alias = ""
            if rng.random() < 0.2:
                self.aliases += 1
                alias = f"x{self.aliases}: "
            child = get_named_type(field.type)
            if isinstance(child, GraphQLObjectType):
                if depth >= 3:
                    continue
                parts.append(f"{alias}{name}{arguments} {{ {self.selection(child, depth + 1)} }}")
            else:
                parts.append(f"{alias}{name}{arguments}")
        if rng.random() < 0.2:
            parts.append("__typename")
        if rng.random() < 0.2 and parts:
            parts = [f"... on {type_.name} {{ {' '.join(parts)} }}"]
        return " ".join(parts) or "__typename"


async def _user(person: Person) -> User:
    return await User.get(id=int(person.id))


async def _compare(
    api: Api, documents: list[str], variables: dict, people: list[Person], topic: str, build: Any
) -> int:
    """For each document and event: the payload a cohort renders once equals, for every viewer,
    a plain execution of the document for that viewer alone. How many payloads were compared."""
    planner = api.app.state.planner
    schema = planner.schema
    messages = [from_row(e) for e in await Event.filter(topic=topic).order_by("seq")]
    assert messages
    viewers = [await _user(p) for p in people]
    compared = 0
    for document in documents:
        plans = [
            await planner.plan(Context(api.settings, viewer=v), document, variables, None) for v in viewers
        ]
        if isinstance(plans[0], list):  # over a limit, for every viewer alike
            assert all(isinstance(p, list) for p in plans)
            continue
        for message in messages:
            rendered: dict[Any, str] = {}
            for viewer, plan in zip(viewers, plans, strict=True):
                assert not isinstance(plan, list) and plan is not None and plan.feed is not None
                if not plan.feed.admit(message):
                    continue
                if plan.key not in rendered:
                    rendered[plan.key] = await plan.render(message)  # the cohort's one render
                alone = execute(
                    schema,
                    parse(document),
                    root_value=build(message),
                    context_value=Context(api.settings, viewer=viewer, loaders=Loaders()),
                    variable_values=variables,
                )
                result = await alone if isawaitable(alone) else alone
                reference = payload_json(result, mask=api.settings.production)
                assert rendered[plan.key] == reference, (document, message.seq, viewer.role)
                compared += 1
    return compared


async def test_cohort_payloads_equal_per_subscriber_execution_for_random_documents(api: Api) -> None:
    admin, member, other = await api.person(Role.ADMIN), await api.person(), await api.person()
    project = (await api.ok(member, PROJECT))["createProject"]["id"]
    await api.ok(admin, MEMBER, p=project, u=other.id)  # an admin may add anyone
    for _ in range(2):
        task = (await api.ok(member, TASK, p=project, a=other.id))["createTask"]["id"]
        await api.ok(other, 'mutation($t: ID!) { addTaskComment(taskId: $t, body: "hi") { id } }', t=task)
        await api.ok(
            admin, "mutation($t: ID!) { moveTask(id: $t, status: DONE, position: 0) { id } }", t=task
        )
    event_type = api.app.state.planner.schema.get_type("TaskEvent")
    generator = Documents(api.app.state.planner.schema, seed=20261202)
    documents = [
        f"subscription($p: ID!) {{ taskEvents(projectId: $p) {{ {generator.selection(event_type)} }} }}"
        for _ in range(40)
    ]
    compared = await _compare(
        api, documents, {"p": project}, [admin, member, other], f"project:{project}", _task_event
    )
    assert compared >= 40 * 3 * 5


async def test_ticket_assignment_payloads_equal_per_subscriber_execution(api: Api) -> None:
    desk = await make_desk(api)
    ticket = (
        await api.ok(
            desk.requester,
            'mutation($q: ID!) { createTicket(input: {queueId: $q, title: "Help"}) { id } }',
            q=desk.queue,
        )
    )["createTicket"]["id"]
    assign = "mutation($t: ID!, $a: ID) { assignTicket(id: $t, assigneeId: $a) { id } }"
    await api.ok(desk.admin, assign, t=ticket, a=desk.agent.id)
    await api.ok(desk.admin, assign, t=ticket, a=None)
    await api.ok(desk.admin, assign, t=ticket, a=desk.agent.id)
    assignment = api.app.state.planner.schema.get_type("TicketAssignment")
    generator = Documents(api.app.state.planner.schema, seed=7)
    documents = [
        f"subscription($u: ID!) {{ ticketAssigned(userId: $u) {{ {generator.selection(assignment)} }} }}"
        for _ in range(30)
    ]
    # The agent itself and an admin watch the agent's assignments.
    compared = await _compare(
        api,
        documents,
        {"u": desk.agent.id},
        [desk.agent, desk.admin],
        f"user:{desk.agent.id}:tickets",
        _assignment,
    )
    assert compared >= 30 * 2 * 2


EVENTS = """subscription($p: ID!) {
  taskEvents(projectId: $p) { type task { title assignee { name } } actor { name } } }"""
OTHER = "subscription($p: ID!) { taskEvents(projectId: $p) { cursor task { id version } } }"


async def test_each_event_is_executed_once_per_cohort(live: LiveServer) -> None:
    owner = live.token("owner@example.test")
    project = (await live.gql(owner, PROJECT))["createProject"]["id"]
    engine = live.app.state.engine  # type: ignore[union-attr]
    sockets = [ws(live, live.token(f"s{i}@example.test", Role.ADMIN)) for i in range(6)]
    clients = [await s.__aenter__() for s in sockets]
    try:
        for i, client in enumerate(clients):
            await client.subscribe("1", EVENTS if i % 2 else OTHER, p=project)
            await client.send({"type": "ping"})
            assert await client.receive() == {"type": "pong"}
        for _ in range(100):
            if engine.cohorts.members == 6:
                break
            await asyncio.sleep(0.02)
        assert (len(engine.cohorts), engine.cohorts.members) == (2, 6)
        renders = engine.cohorts.stats["renders"]
        for _ in range(5):
            await live.gql(owner, TASK, p=project, a=None)
        for i, client in enumerate(clients):
            received = [(await client.next("1"))["taskEvents"] for _ in range(5)]
            assert [e["task"]["version" if i % 2 == 0 else "title"] for e in received] == (
                [1] * 5 if i % 2 == 0 else ["T"] * 5
            )
        assert engine.cohorts.stats["renders"] - renders == 5 * 2  # 5 events, 2 cohorts
    finally:
        for s in sockets:
            await s.__aexit__(None, None, None)


async def test_nothing_is_left_after_1000_subscribe_complete_cycles(live: LiveServer) -> None:
    token = live.token("cycles@example.test")
    project = (await live.gql(token, PROJECT))["createProject"]["id"]
    engine, hub = live.app.state.engine, live.hub  # type: ignore[union-attr]
    tasks_before = len(asyncio.all_tasks())
    async with ws(live, token) as client:
        for cycle in range(1000):
            await client.subscribe(str(cycle), EVENTS if cycle % 2 else OTHER, p=project)
            if cycle % 10 == 0:  # now and then an event while it is live
                await client.send({"type": "ping"})
                assert await client.receive() == {"type": "pong"}
            await client.complete(str(cycle))
        await client.send({"type": "ping"})
        assert await client.receive() == {"type": "pong"}
        for _ in range(200):
            if not len(engine.cohorts) and not hub.topics:
                break
            await asyncio.sleep(0.02)
        assert (len(engine.cohorts), engine.cohorts.members, hub.topics) == (0, 0, {})
    for _ in range(200):
        if len(asyncio.all_tasks()) <= tasks_before and not any(len(o) for o in OPEN):
            break
        await asyncio.sleep(0.02)
    assert len(asyncio.all_tasks()) <= tasks_before


async def test_a_socket_whose_claims_are_known_reads_and_writes_no_user_row(live: LiveServer) -> None:
    token = live.token("known@example.test")
    await live.gql(token, "{ viewer { id } }")  # first sight: the user is made
    with count_queries() as statements:
        async with ws(live, token) as client:
            await client.send({"type": "ping"})
            assert await client.receive() == {"type": "pong"}
    assert not [s for s in statements if "users" in s], statements


QUEUE_METRICS = (
    "subscription($q: ID!) { queueMetrics(queueId: $q) { queueId open byStatus { status count } } }"
)


async def test_queue_metrics_watchers_of_one_selection_share_one_serialisation(live: LiveServer) -> None:
    admin = live.token("boss@example.test", Role.ADMIN)
    team = (await live.gql(admin, 'mutation { createTeam(input: {name: "Desk"}) { id } }'))["createTeam"][
        "id"
    ]
    queue = (
        await live.gql(
            admin,
            "mutation($i: CreateQueueInput!) { createQueue(input: $i) { id } }",
            i={"teamId": team, "name": "Q", "slaFirstResponseMinutes": 60, "slaResolutionMinutes": 480},
        )
    )["createQueue"]["id"]
    engine = live.app.state.engine  # type: ignore[union-attr]
    sockets = [ws(live, live.token(f"w{i}@example.test", Role.ADMIN)) for i in range(3)]
    clients = [await s.__aenter__() for s in sockets]
    try:
        for client in clients:
            await client.subscribe("m", QUEUE_METRICS, q=queue)
            assert (await client.next("m"))["queueMetrics"]["open"] == 0
        renders = engine.cohorts.stats["snapshot renders"]
        await live.gql(
            admin, 'mutation($q: ID!) { createTicket(input: {queueId: $q, title: "x"}) { id } }', q=queue
        )
        for client in clients:
            assert (await client.next("m"))["queueMetrics"]["open"] == 1
        assert engine.cohorts.stats["snapshot renders"] - renders == 1
    finally:
        for s in sockets:
            await s.__aexit__(None, None, None)
