"""Teams and support queues: admins create them, every signed-in user may read queues."""

from __future__ import annotations

import pytest

from pulseboard.models import Queue, Role, Team
from tests.helpers import Api, Person, code

CREATE_TEAM = "mutation($name: String!) { createTeam(input: {name: $name}) { id name } }"
CREATE_QUEUE = """
mutation($input: CreateQueueInput!) {
  createQueue(input: $input) {
    id name slaFirstResponseMinutes slaResolutionMinutes createdAt team { id name }
  }
}"""
QUEUE = "query($id: ID!) { queue(id: $id) { id name slaFirstResponseMinutes team { id } } }"
QUEUES = "{ queues { totalCount edges { node { id name } } } }"


async def make_team(api: Api, admin: Person, name: str = "Support") -> str:
    return (await api.ok(admin, CREATE_TEAM, name=name))["createTeam"]["id"]


def queue_input(team_id: str, **overrides: object) -> dict:
    return {
        "teamId": team_id,
        "name": "Billing",
        "slaFirstResponseMinutes": 60,
        "slaResolutionMinutes": 480,
        **overrides,
    }


async def test_admin_creates_a_queue_for_a_team(api: Api) -> None:
    admin = await api.person(Role.ADMIN)
    team = await make_team(api, admin)

    inp = queue_input(team, slaFirstResponseMinutes=1)  # the smallest target allowed
    queue = (await api.ok(admin, CREATE_QUEUE, input=inp))["createQueue"]

    assert queue["name"] == "Billing"
    assert queue["slaFirstResponseMinutes"] == 1
    assert queue["slaResolutionMinutes"] == 480
    assert queue["team"] == {"id": team, "name": "Support"}
    stored = await Queue.get(id=int(queue["id"]))
    assert (stored.team_id, stored.sla_first_response_minutes) == (int(team), 1)


@pytest.mark.parametrize("role", [Role.AGENT, Role.MEMBER])
async def test_only_admins_create_queues(api: Api, role: Role) -> None:
    admin = await api.person(Role.ADMIN)
    team = await make_team(api, admin)
    other = await api.person(role)

    err = await api.error(other, CREATE_QUEUE, input=queue_input(team))

    assert code(err) == "FORBIDDEN"
    assert await Queue.all().count() == 0


@pytest.mark.parametrize("field", ["slaFirstResponseMinutes", "slaResolutionMinutes"])
@pytest.mark.parametrize("minutes", [0, -5])
async def test_sla_minutes_must_be_at_least_one(api: Api, field: str, minutes: int) -> None:
    admin = await api.person(Role.ADMIN)
    team = await make_team(api, admin)

    err = await api.error(admin, CREATE_QUEUE, input=queue_input(team, **{field: minutes}))

    assert code(err) == "BAD_USER_INPUT"
    assert err["extensions"]["field"] == field
    assert await Queue.all().count() == 0


@pytest.mark.parametrize("team_id", ["999", "not-a-number"])
async def test_queue_for_unknown_team_is_not_found(api: Api, team_id: str) -> None:
    admin = await api.person(Role.ADMIN)

    err = await api.error(admin, CREATE_QUEUE, input=queue_input(team_id))

    assert code(err) == "NOT_FOUND"
    assert await Queue.all().count() == 0


async def test_any_signed_in_user_reads_queues(api: Api) -> None:
    admin = await api.person(Role.ADMIN)
    team = await make_team(api, admin)
    first = (await api.ok(admin, CREATE_QUEUE, input=queue_input(team, name="A")))["createQueue"]
    second = (await api.ok(admin, CREATE_QUEUE, input=queue_input(team, name="B")))["createQueue"]
    member = await api.person()

    listed = (await api.ok(member, QUEUES))["queues"]
    one = (await api.ok(member, QUEUE, id=second["id"]))["queue"]

    assert listed["totalCount"] == 2
    assert [e["node"] for e in listed["edges"]] == [
        {"id": first["id"], "name": "A"},
        {"id": second["id"], "name": "B"},
    ]
    assert one == {"id": second["id"], "name": "B", "slaFirstResponseMinutes": 60, "team": {"id": team}}


async def test_unknown_queue_is_not_found(api: Api) -> None:
    member = await api.person()

    err = await api.error(member, QUEUE, id="12345")

    assert code(err) == "NOT_FOUND"


async def test_queues_need_a_signed_in_user(api: Api) -> None:
    err = await api.error(None, QUEUES)

    assert code(err) == "UNAUTHENTICATED"


@pytest.mark.parametrize("role", [Role.AGENT, Role.MEMBER])
async def test_only_admins_create_teams(api: Api, role: Role) -> None:
    other = await api.person(role)

    err = await api.error(other, CREATE_TEAM, name="Support")

    assert code(err) == "FORBIDDEN"
    assert await Team.all().count() == 0


async def test_duplicate_team_name_is_bad_input(api: Api) -> None:
    admin = await api.person(Role.ADMIN)
    await make_team(api, admin, "Support")

    err = await api.error(admin, CREATE_TEAM, name="Support")

    assert code(err) == "BAD_USER_INPUT"
    assert err["extensions"]["field"] == "name"
    assert await Team.all().count() == 1
