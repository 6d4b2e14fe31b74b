"""Projects: creation, visibility (what you may not see is NOT_FOUND) and members."""

from __future__ import annotations

from pulseboard.models import Role
from tests.helpers import Api, Person, code

CREATE_PROJECT = """
mutation($name: String!, $description: String) {
  createProject(input: {name: $name, description: $description}) {
    id name description createdBy { id } members { id }
  }
}
"""
PROJECT = "query($id: ID!) { project(id: $id) { id name members { id } } }"
PROJECTS = "{ projects { totalCount edges { node { id } } } }"
ADD_MEMBER = """
mutation($projectId: ID!, $userId: ID!) {
  addProjectMember(projectId: $projectId, userId: $userId) { id members { id } }
}
"""


async def create_project(api: Api, who: Person, name: str = "Board") -> str:
    data = await api.ok(who, CREATE_PROJECT, name=name)
    return data["createProject"]["id"]


async def test_create_project_makes_the_creator_a_member(api: Api) -> None:
    alice = await api.person()
    data = await api.ok(alice, CREATE_PROJECT, name="  Launch  ", description="Q3")
    project = data["createProject"]
    assert project["name"] == "Launch"
    assert project["description"] == "Q3"
    assert project["createdBy"] == {"id": alice.id}
    assert project["members"] == [{"id": alice.id}]

    fetched = await api.ok(alice, PROJECT, id=project["id"])
    assert fetched["project"]["name"] == "Launch"


async def test_create_project_needs_a_name(api: Api) -> None:
    alice = await api.person()
    err = await api.error(alice, CREATE_PROJECT, name="   ")
    assert code(err) == "BAD_USER_INPUT"
    assert err["extensions"]["field"] == "name"
    assert (await api.ok(alice, PROJECTS))["projects"]["totalCount"] == 0


async def test_projects_lists_only_the_viewers_projects(api: Api) -> None:
    alice, bob = await api.person(), await api.person()
    a1 = await create_project(api, alice, "A1")
    a2 = await create_project(api, alice, "A2")
    b1 = await create_project(api, bob, "B1")

    mine = (await api.ok(alice, PROJECTS))["projects"]
    assert [e["node"]["id"] for e in mine["edges"]] == [a1, a2]
    assert mine["totalCount"] == 2
    theirs = (await api.ok(bob, PROJECTS))["projects"]
    assert [e["node"]["id"] for e in theirs["edges"]] == [b1]
    assert theirs["totalCount"] == 1


async def test_admins_see_every_project(api: Api) -> None:
    alice, bob, admin = await api.person(), await api.person(), await api.person(Role.ADMIN)
    ids = [await create_project(api, alice), await create_project(api, bob)]
    data = await api.ok(admin, PROJECTS)
    assert [e["node"]["id"] for e in data["projects"]["edges"]] == ids
    assert data["projects"]["totalCount"] == 2
    assert (await api.ok(admin, PROJECT, id=ids[1]))["project"]["id"] == ids[1]


async def test_a_non_member_cannot_see_a_project(api: Api) -> None:
    alice, mallory = await api.person(), await api.person()
    project_id = await create_project(api, alice)
    for project in (project_id, "999999", "abc"):
        err = await api.error(mallory, PROJECT, id=project)
        assert code(err) == "NOT_FOUND", project


async def test_the_owner_adds_members(api: Api) -> None:
    alice, bob, carol = await api.person(), await api.person(), await api.person()
    # Owners add people they share a project or a team with (tests/test_membership.py).
    admin = await api.person(Role.ADMIN)
    team = (await api.ok(admin, 'mutation { createTeam(input: {name: "Crew"}) { id } }'))["createTeam"]["id"]
    for person in (alice, bob, carol):
        await api.ok(
            admin,
            "mutation($t: ID!, $u: ID!) { addTeamMember(teamId: $t, userId: $u) { id } }",
            t=team,
            u=person.id,
        )
    project_id = await create_project(api, alice)

    data = await api.ok(alice, ADD_MEMBER, projectId=project_id, userId=bob.id)
    assert data["addProjectMember"]["members"] == [{"id": alice.id}, {"id": bob.id}]
    # The new member may now see the project, but only owners add others.
    assert (await api.ok(bob, PROJECT, id=project_id))["project"]["id"] == project_id
    err = await api.error(bob, ADD_MEMBER, projectId=project_id, userId=carol.id)
    assert code(err) == "FORBIDDEN"
    # Adding twice changes nothing.
    await api.ok(alice, ADD_MEMBER, projectId=project_id, userId=carol.id)
    data = await api.ok(alice, ADD_MEMBER, projectId=project_id, userId=carol.id)
    assert data["addProjectMember"]["members"] == [{"id": p.id} for p in (alice, bob, carol)]
    assert (await api.ok(carol, PROJECT, id=project_id))["project"]["id"] == project_id


async def test_a_non_member_cannot_add_members(api: Api) -> None:
    alice, mallory = await api.person(), await api.person()
    project_id = await create_project(api, alice)
    err = await api.error(mallory, ADD_MEMBER, projectId=project_id, userId=mallory.id)
    assert code(err) == "NOT_FOUND"
    members = (await api.ok(alice, PROJECT, id=project_id))["project"]["members"]
    assert members == [{"id": alice.id}]


async def test_adding_an_unknown_user_is_not_found(api: Api) -> None:
    alice = await api.person()
    project_id = await create_project(api, alice)
    for user in ("999999", "abc"):
        err = await api.error(alice, ADD_MEMBER, projectId=project_id, userId=user)
        assert code(err) == "NOT_FOUND", user
