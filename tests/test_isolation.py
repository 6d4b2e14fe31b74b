"""One subscriber cannot cancel, fail or stall another's delivery (the red-team's reproduction)."""

from __future__ import annotations

import asyncio
import random

from pulseboard.models import Role
from tests.live import LiveServer, ws

PROJECT = 'mutation { createProject(input: {name: "Shared"}) { id } }'
MEMBER = "mutation($p: ID!, $u: ID!) { addProjectMember(projectId: $p, userId: $u) { id } }"
TASK = 'mutation($p: ID!) { createTask(input: {projectId: $p, title: "start"}) { id } }'
RENAME = "mutation($id: ID!, $t: String!) { updateTask(id: $id, input: {title: $t}) { id } }"
# Related rows on the task and the actor: each a load that subscribers of an event share.
EVENTS = """subscription($p: ID!) { taskEvents(projectId: $p) {
  type task { title assignee { name } createdBy { name } } actor { name } } }"""


async def test_a_subscriber_leaving_mid_event_does_not_end_another_stream(live: LiveServer) -> None:
    victim = live.token("victim@example.test", Role.MEMBER)
    attacker = live.token("attacker@example.test", Role.MEMBER)
    attacker_id = (await live.gql(attacker, "{ viewer { id } }"))["viewer"]["id"]
    project = (await live.gql(victim, PROJECT))["createProject"]["id"]
    await live.gql(live.token("admin@example.test", Role.ADMIN), MEMBER, p=project, u=attacker_id)
    task = (await live.gql(victim, TASK, p=project))["createTask"]["id"]
    rng = random.Random(20261202)
    async with ws(live, victim) as watching:
        await watching.subscribe("v", EVENTS, p=project)
        await watching.send({"type": "ping"})
        assert await watching.receive() == {"type": "pong"}
        await asyncio.sleep(0.1)
        for round in range(40):
            async with ws(live, attacker) as leaving:
                await leaving.subscribe("a", EVENTS, p=project)
                await live.gql(attacker, RENAME, id=task, t=f"round {round}")
                await asyncio.sleep(rng.uniform(0, 0.02))
                await leaving.complete("a")
            event = (await watching.next("v", within=5))["taskEvents"]
            assert event["task"]["title"] == f"round {round}", event
            assert event["actor"] == {"name": "attacker"}
            assert event["task"]["createdBy"] == {"name": "victim"}
