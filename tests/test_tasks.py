"""Tasks on a board: columns with dense positions, versions, access, and the events they write."""

from __future__ import annotations

import asyncio
import random

import pytest

from pulseboard.models import Event, Role
from tests.conftest import ON_POSTGRES
from tests.helpers import Api, Person, code, count_queries

TASK_FIELDS = """
  id title description status position priority progress dueAt completedAt version
  assignee { id }
"""
CREATE_PROJECT = "mutation($name: String!) { createProject(input: {name: $name}) { id } }"
ADD_MEMBER = "mutation($p: ID!, $u: ID!) { addProjectMember(projectId: $p, userId: $u) { id } }"
CREATE_TASK = f"mutation($input: CreateTaskInput!) {{ createTask(input: $input) {{ {TASK_FIELDS} }} }}"
UPDATE_TASK = f"""
mutation($id: ID!, $input: UpdateTaskInput!, $v: Int) {{
  updateTask(id: $id, input: $input, expectedVersion: $v) {{ {TASK_FIELDS} }}
}}
"""
MOVE_TASK = f"""
mutation($id: ID!, $status: TaskStatus!, $position: Int!, $v: Int) {{
  moveTask(id: $id, status: $status, position: $position, expectedVersion: $v) {{ {TASK_FIELDS} }}
}}
"""
ASSIGN_TASK = f"""
mutation($id: ID!, $assigneeId: ID) {{ assignTask(id: $id, assigneeId: $assigneeId) {{ {TASK_FIELDS} }} }}
"""
COMPLETE_TASK = f"mutation($id: ID!) {{ completeTask(id: $id) {{ {TASK_FIELDS} }} }}"
DELETE_TASK = f"mutation($id: ID!) {{ deleteTask(id: $id) {{ {TASK_FIELDS} }} }}"
ADD_COMMENT = "mutation($id: ID!, $body: String!) { addTaskComment(taskId: $id, body: $body) { id body } }"
TASK = f"""
query($id: ID!) {{
  task(id: $id) {{
    {TASK_FIELDS}
    comments {{ totalCount edges {{ node {{ body author {{ id }} }} }} }}
  }}
}}
"""
TASKS = """
query($p: ID!, $status: TaskStatus, $assigneeId: ID, $first: Int) {
  tasks(projectId: $p, status: $status, assigneeId: $assigneeId, first: $first) {
    totalCount edges { node { id status position } }
  }
}
"""
COLUMNS = ("TODO", "IN_PROGRESS", "IN_REVIEW", "DONE")


async def project_with(api: Api, owner: Person, *members: Person) -> str:
    """A project of `owner`'s; an admin adds the members (owners add only people they share a
    project or a team with: tests/test_membership.py)."""
    project_id = (await api.ok(owner, CREATE_PROJECT, name="Board"))["createProject"]["id"]
    if members:
        admin = await api.person(Role.ADMIN)
        for member in members:
            await api.ok(admin, ADD_MEMBER, p=project_id, u=member.id)
    return project_id


async def create(api: Api, who: Person, project_id: str, title: str = "Task", **fields: object) -> dict:
    data = await api.ok(who, CREATE_TASK, input={"projectId": project_id, "title": title, **fields})
    return data["createTask"]


async def board(api: Api, who: Person, project_id: str) -> dict[str, list[str]]:
    """Task ids per column in board order, after checking every column's positions are 0..n-1."""
    edges = (await api.ok(who, TASKS, p=project_id, first=100))["tasks"]["edges"]
    columns: dict[str, list[str]] = {status: [] for status in COLUMNS}
    for edge in edges:
        node = edge["node"]
        assert node["position"] == len(columns[node["status"]]), edges
        columns[node["status"]].append(node["id"])
    return columns


async def events(project_id: str) -> list[Event]:
    return await Event.filter(topic=f"project:{project_id}").order_by("seq")


# --- createTask ---------------------------------------------------------------------------------


async def test_create_task_appends_to_its_column_with_defaults(api: Api) -> None:
    alice = await api.person()
    project_id = await project_with(api, alice)
    first, second, third = [await create(api, alice, project_id, f"T{i}") for i in range(3)]
    assert [t["position"] for t in (first, second, third)] == [0, 1, 2]
    assert first["status"] == "TODO"
    assert first["priority"] == "MEDIUM"
    assert (first["progress"], first["version"], first["assignee"]) == (0, 1, None)

    doing = await create(api, alice, project_id, "Doing", status="IN_PROGRESS", priority="HIGH")
    assert (doing["status"], doing["position"], doing["priority"]) == ("IN_PROGRESS", 0, "HIGH")
    done = await create(api, alice, project_id, "Done", status="DONE")
    assert done["completedAt"] is not None and done["progress"] == 100
    columns = await board(api, alice, project_id)
    assert columns["TODO"] == [first["id"], second["id"], third["id"]]


async def test_create_task_assignee_must_be_a_project_member(api: Api) -> None:
    alice, bob, outsider = await api.person(), await api.person(), await api.person()
    project_id = await project_with(api, alice, bob)
    for assignee in (outsider.id, "999999", "abc"):
        err = await api.error(
            alice, CREATE_TASK, input={"projectId": project_id, "title": "T", "assigneeId": assignee}
        )
        assert code(err) == "BAD_USER_INPUT", assignee
        assert err["extensions"]["field"] == "assigneeId"
    assert await board(api, alice, project_id) == {status: [] for status in COLUMNS}

    task = await create(api, alice, project_id, assigneeId=bob.id)
    assert task["assignee"] == {"id": bob.id}


@pytest.mark.parametrize("title", ["", "   ", "x" * 201])
async def test_create_task_rejects_a_bad_title(api: Api, title: str) -> None:
    alice = await api.person()
    project_id = await project_with(api, alice)
    err = await api.error(alice, CREATE_TASK, input={"projectId": project_id, "title": title})
    assert code(err) == "BAD_USER_INPUT"
    assert err["extensions"]["field"] == "title"
    assert await events(project_id) == []


async def test_a_title_of_200_characters_is_fine(api: Api) -> None:
    alice = await api.person()
    project_id = await project_with(api, alice)
    assert (await create(api, alice, project_id, "x" * 200))["title"] == "x" * 200


# --- updateTask ---------------------------------------------------------------------------------


async def test_update_task_changes_only_the_fields_sent(api: Api) -> None:
    alice = await api.person()
    project_id = await project_with(api, alice)
    task = await create(api, alice, project_id, "Old", description="Keep", dueAt="2030-01-02T03:04:05+00:00")

    updated = (await api.ok(alice, UPDATE_TASK, id=task["id"], input={"title": "New"}))["updateTask"]
    assert (updated["title"], updated["description"], updated["priority"]) == ("New", "Keep", "MEDIUM")
    assert updated["dueAt"] == task["dueAt"] is not None
    assert updated["version"] == 2

    updated = await api.ok(alice, UPDATE_TASK, id=task["id"], input={"dueAt": None, "progress": 40})
    updated = updated["updateTask"]
    assert (updated["dueAt"], updated["progress"], updated["title"]) == (None, 40, "New")
    assert updated["version"] == 3

    # Sending what is already there is no change: no new version, no event.
    same = (await api.ok(alice, UPDATE_TASK, id=task["id"], input={"title": "New"}))["updateTask"]
    assert same["version"] == 3
    assert [e.type for e in await events(project_id)] == ["CREATED", "UPDATED", "UPDATED"]


@pytest.mark.parametrize(
    ("values", "field"),
    [({"progress": -1}, "progress"), ({"progress": 101}, "progress"), ({"title": ""}, "title")],
)
async def test_update_task_rejects_bad_values(api: Api, values: dict, field: str) -> None:
    alice = await api.person()
    project_id = await project_with(api, alice)
    task = await create(api, alice, project_id)
    err = await api.error(alice, UPDATE_TASK, id=task["id"], input=values)
    assert code(err) == "BAD_USER_INPUT"
    assert err["extensions"]["field"] == field
    assert (await api.ok(alice, TASK, id=task["id"]))["task"]["version"] == 1
    assert [e.type for e in await events(project_id)] == ["CREATED"]


async def test_a_stale_expected_version_conflicts_and_changes_nothing(api: Api) -> None:
    alice = await api.person()
    project_id = await project_with(api, alice)
    task = await create(api, alice, project_id, "One")
    await api.ok(alice, UPDATE_TASK, id=task["id"], input={"title": "Two"}, v=1)

    for query, variables in [
        (UPDATE_TASK, {"input": {"title": "Three"}}),
        (MOVE_TASK, {"status": "DONE", "position": 0}),
    ]:
        err = await api.error(alice, query, id=task["id"], v=1, **variables)
        assert code(err) == "CONFLICT"
        assert err["extensions"]["currentVersion"] == 2
    now = (await api.ok(alice, TASK, id=task["id"]))["task"]
    assert (now["title"], now["status"], now["version"]) == ("Two", "TODO", 2)
    assert [e.seq for e in await events(project_id)] == [1, 2]


# --- moveTask, completeTask, assignTask, deleteTask ---------------------------------------------


async def test_move_within_a_column_keeps_positions_dense(api: Api) -> None:
    alice = await api.person()
    project_id = await project_with(api, alice)
    a, b, c, d = [(await create(api, alice, project_id, name))["id"] for name in "ABCD"]

    moved = (await api.ok(alice, MOVE_TASK, id=d, status="TODO", position=0))["moveTask"]
    assert (moved["position"], moved["version"]) == (0, 2)
    assert (await board(api, alice, project_id))["TODO"] == [d, a, b, c]
    await api.ok(alice, MOVE_TASK, id=d, status="TODO", position=2)
    assert (await board(api, alice, project_id))["TODO"] == [a, b, d, c]
    await api.ok(alice, MOVE_TASK, id=a, status="TODO", position=50)
    assert (await board(api, alice, project_id))["TODO"] == [b, d, c, a]


async def test_move_across_columns_keeps_both_dense(api: Api) -> None:
    alice = await api.person()
    project_id = await project_with(api, alice)
    a, b, c = [(await create(api, alice, project_id, name))["id"] for name in "ABC"]
    x = (await create(api, alice, project_id, "X", status="IN_PROGRESS"))["id"]

    await api.ok(alice, MOVE_TASK, id=b, status="IN_PROGRESS", position=0)
    columns = await board(api, alice, project_id)
    assert (columns["TODO"], columns["IN_PROGRESS"]) == ([a, c], [b, x])

    # A position past the end lands at the end.
    moved = (await api.ok(alice, MOVE_TASK, id=a, status="IN_PROGRESS", position=99))["moveTask"]
    assert moved["position"] == 2
    columns = await board(api, alice, project_id)
    assert (columns["TODO"], columns["IN_PROGRESS"]) == ([c], [b, x, a])

    err = await api.error(alice, MOVE_TASK, id=a, status="TODO", position=-1)
    assert (code(err), err["extensions"]["field"]) == ("BAD_USER_INPUT", "position")


async def test_moving_to_done_and_out_sets_and_clears_completed_at(api: Api) -> None:
    alice = await api.person()
    project_id = await project_with(api, alice)
    task = await create(api, alice, project_id)
    done = (await api.ok(alice, MOVE_TASK, id=task["id"], status="DONE", position=0))["moveTask"]
    assert done["status"] == "DONE" and done["completedAt"] is not None
    back = (await api.ok(alice, MOVE_TASK, id=task["id"], status="IN_REVIEW", position=0))["moveTask"]
    assert back["status"] == "IN_REVIEW" and back["completedAt"] is None


async def test_complete_task(api: Api) -> None:
    alice = await api.person()
    project_id = await project_with(api, alice)
    a, b = await create(api, alice, project_id, "A"), await create(api, alice, project_id, "B")
    earlier = (await create(api, alice, project_id, "Done already", status="DONE"))["id"]

    done = (await api.ok(alice, COMPLETE_TASK, id=a["id"]))["completeTask"]
    assert (done["status"], done["progress"], done["version"]) == ("DONE", 100, 2)
    assert done["completedAt"] is not None
    columns = await board(api, alice, project_id)
    assert (columns["TODO"], columns["DONE"]) == ([b["id"]], [earlier, a["id"]])


async def test_assign_and_unassign(api: Api) -> None:
    alice, bob, outsider = await api.person(), await api.person(), await api.person()
    project_id = await project_with(api, alice, bob)
    task = await create(api, alice, project_id)

    assigned = (await api.ok(alice, ASSIGN_TASK, id=task["id"], assigneeId=bob.id))["assignTask"]
    assert (assigned["assignee"], assigned["version"]) == ({"id": bob.id}, 2)
    err = await api.error(alice, ASSIGN_TASK, id=task["id"], assigneeId=outsider.id)
    assert (code(err), err["extensions"]["field"]) == ("BAD_USER_INPUT", "assigneeId")
    unassigned = (await api.ok(alice, ASSIGN_TASK, id=task["id"], assigneeId=None))["assignTask"]
    assert (unassigned["assignee"], unassigned["version"]) == (None, 3)


async def test_delete_task_compacts_its_column(api: Api) -> None:
    alice = await api.person()
    project_id = await project_with(api, alice)
    a, b, c = [(await create(api, alice, project_id, name))["id"] for name in "ABC"]

    deleted = (await api.ok(alice, DELETE_TASK, id=b))["deleteTask"]
    assert (deleted["id"], deleted["title"]) == (b, "B")
    assert (await board(api, alice, project_id))["TODO"] == [a, c]
    for query in (TASK, DELETE_TASK):
        assert code(await api.error(alice, query, id=b)) == "NOT_FOUND"


async def test_comments_appear_on_the_task(api: Api) -> None:
    alice, bob = await api.person(), await api.person()
    project_id = await project_with(api, alice, bob)
    task = await create(api, alice, project_id)
    await api.ok(alice, ADD_COMMENT, id=task["id"], body="First")
    await api.ok(bob, ADD_COMMENT, id=task["id"], body="  Second  ")
    err = await api.error(bob, ADD_COMMENT, id=task["id"], body=" ")
    assert (code(err), err["extensions"]["field"]) == ("BAD_USER_INPUT", "body")

    comments = (await api.ok(alice, TASK, id=task["id"]))["task"]["comments"]
    assert comments["totalCount"] == 2
    assert [e["node"] for e in comments["edges"]] == [
        {"body": "First", "author": {"id": alice.id}},
        {"body": "Second", "author": {"id": bob.id}},
    ]


# --- access -------------------------------------------------------------------------------------


async def test_a_non_member_gets_not_found_for_everything(api: Api) -> None:
    alice, mallory = await api.person(), await api.person()
    project_id = await project_with(api, alice)
    task_id = (await create(api, alice, project_id))["id"]

    attempts: list[tuple[str, dict]] = [
        (TASK, {"id": task_id}),
        (TASKS, {"p": project_id}),
        (CREATE_TASK, {"input": {"projectId": project_id, "title": "Mine"}}),
        (UPDATE_TASK, {"id": task_id, "input": {"title": "Mine"}}),
        (MOVE_TASK, {"id": task_id, "status": "DONE", "position": 0}),
        (ASSIGN_TASK, {"id": task_id, "assigneeId": mallory.id}),
        (COMPLETE_TASK, {"id": task_id}),
        (DELETE_TASK, {"id": task_id}),
        (ADD_COMMENT, {"id": task_id, "body": "Hi"}),
    ]
    for query, variables in attempts:
        assert code(await api.error(mallory, query, **variables)) == "NOT_FOUND", query
    task = (await api.ok(alice, TASK, id=task_id))["task"]
    assert (task["version"], task["comments"]["totalCount"]) == (1, 0)
    assert [e.type for e in await events(project_id)] == ["CREATED"]


@pytest.mark.parametrize("task_id", ["999999", "abc", "0", "-3", "99999999999"])
async def test_unknown_or_malformed_ids_are_not_found(api: Api, task_id: str) -> None:
    alice = await api.person()
    await project_with(api, alice)
    assert code(await api.error(alice, TASK, id=task_id)) == "NOT_FOUND"
    assert code(await api.error(alice, COMPLETE_TASK, id=task_id)) == "NOT_FOUND"
    assert code(await api.error(alice, TASKS, p=task_id)) == "NOT_FOUND"


# --- events -------------------------------------------------------------------------------------


async def test_each_mutation_writes_its_event(api: Api) -> None:
    alice, bob = await api.person(), await api.person()
    project_id = await project_with(api, alice, bob)
    task_id = (await create(api, alice, project_id, "Write"))["id"]
    await api.ok(alice, UPDATE_TASK, id=task_id, input={"title": "Write tests", "progress": 10})
    await api.ok(alice, MOVE_TASK, id=task_id, status="IN_PROGRESS", position=0)
    await api.ok(alice, ASSIGN_TASK, id=task_id, assigneeId=bob.id)
    await api.ok(bob, ADD_COMMENT, id=task_id, body="On it")
    await api.ok(bob, COMPLETE_TASK, id=task_id)
    await api.ok(alice, DELETE_TASK, id=task_id)

    rows = await events(project_id)
    assert [(e.seq, e.type) for e in rows] == [
        (1, "CREATED"),
        (2, "UPDATED"),
        (3, "MOVED"),
        (4, "ASSIGNED"),
        (5, "COMMENTED"),
        (6, "COMPLETED"),
        (7, "DELETED"),
    ]
    assert [e.actor_id for e in rows] == [int(alice.id)] * 4 + [int(bob.id)] * 2 + [int(alice.id)]
    created, updated, moved, assigned, commented, completed, _ = (e.payload for e in rows)
    assert created["changes"] == []
    assert (created["task"]["id"], created["task"]["title"]) == (int(task_id), "Write")
    assert (created["task"]["status"], created["task"]["version"]) == ("TODO", 1)
    assert updated["changes"] == [
        {"field": "title", "from": "Write", "to": "Write tests"},
        {"field": "progress", "from": "0", "to": "10"},
    ]
    assert (updated["task"]["title"], updated["task"]["version"]) == ("Write tests", 2)
    assert moved["changes"] == [{"field": "status", "from": "TODO", "to": "IN_PROGRESS"}]
    assert (moved["task"]["status"], moved["task"]["version"]) == ("IN_PROGRESS", 3)
    assert assigned["changes"] == [{"field": "assigneeId", "from": None, "to": bob.id}]
    assert assigned["task"]["assignee_id"] == int(bob.id)
    assert commented["comment"]["body"] == "On it"
    assert completed["changes"] == [
        {"field": "status", "from": "IN_PROGRESS", "to": "DONE"},
        {"field": "progress", "from": "10", "to": "100"},
    ]
    assert (completed["task"]["status"], completed["task"]["progress"]) == ("DONE", 100)
    assert completed["task"]["completed_at"] is not None


async def test_failed_mutations_write_no_event_and_leave_no_gap(api: Api) -> None:
    alice, outsider = await api.person(), await api.person()
    project_id = await project_with(api, alice)
    task_id = (await create(api, alice, project_id))["id"]
    await api.error(alice, UPDATE_TASK, id=task_id, input={"title": "Late"}, v=7)
    await api.error(alice, UPDATE_TASK, id=task_id, input={"progress": 500})
    await api.error(alice, ASSIGN_TASK, id=task_id, assigneeId=outsider.id)
    await api.error(alice, MOVE_TASK, id=task_id, status="DONE", position=0, v=3)
    await api.ok(alice, COMPLETE_TASK, id=task_id)
    assert [(e.seq, e.type) for e in await events(project_id)] == [(1, "CREATED"), (2, "COMPLETED")]


# --- tasks(projectId) ---------------------------------------------------------------------------


async def test_tasks_are_listed_by_column_then_position_and_filter(api: Api) -> None:
    alice, bob = await api.person(), await api.person()
    project_id = await project_with(api, alice, bob)
    done = await create(api, alice, project_id, "done", status="DONE")
    review = await create(api, alice, project_id, "review", status="IN_REVIEW", assigneeId=bob.id)
    todo2 = await create(api, alice, project_id, "todo2", assigneeId=bob.id)
    doing = await create(api, alice, project_id, "doing", status="IN_PROGRESS")
    todo1 = await create(api, alice, project_id, "todo1")
    await api.ok(alice, MOVE_TASK, id=todo1["id"], status="TODO", position=0)

    listing = (await api.ok(alice, TASKS, p=project_id))["tasks"]
    assert [e["node"]["id"] for e in listing["edges"]] == [
        t["id"] for t in (todo1, todo2, doing, review, done)
    ]
    assert listing["totalCount"] == 5

    todo = (await api.ok(alice, TASKS, p=project_id, status="TODO"))["tasks"]
    assert [e["node"]["id"] for e in todo["edges"]] == [todo1["id"], todo2["id"]]
    assert todo["totalCount"] == 2
    bobs = (await api.ok(alice, TASKS, p=project_id, assigneeId=bob.id, first=1))["tasks"]
    assert [e["node"]["id"] for e in bobs["edges"]] == [todo2["id"]]
    assert bobs["totalCount"] == 2
    both = (await api.ok(alice, TASKS, p=project_id, assigneeId=bob.id, status="IN_REVIEW"))["tasks"]
    assert [e["node"]["id"] for e in both["edges"]] == [review["id"]]
    assert both["totalCount"] == 1


BOARD_PAGE = """
query($p: ID!, $first: Int) {
  tasks(projectId: $p, first: $first) {
    edges { node { id assignee { id name } createdBy { id } project { id } } }
  }
}
"""


async def test_listing_tasks_with_relations_takes_a_constant_number_of_queries(api: Api) -> None:
    alice = await api.person()
    others = [await api.person() for _ in range(4)]
    project_id = await project_with(api, alice, *others)
    people = [alice, *others]
    for i in range(50):
        await create(api, people[i % 3], project_id, f"T{i}", assigneeId=people[i % 5].id)

    statements = {}
    for first in (5, 50):
        with count_queries() as queries:
            data = await api.ok(alice, BOARD_PAGE, p=project_id, first=first)
        edges = data["tasks"]["edges"]
        assert len(edges) == first
        assert {e["node"]["assignee"]["id"] for e in edges} == {p.id for p in people}
        assert all(e["node"]["project"] == {"id": project_id} for e in edges)
        statements[first] = len(queries)
    assert statements[5] == statements[50] <= 8, statements


# --- PostgreSQL: concurrent writers -------------------------------------------------------------

needs_postgres = pytest.mark.skipif(not ON_POSTGRES, reason="needs concurrent writers (PostgreSQL)")


@needs_postgres
async def test_concurrent_updates_all_apply_with_gap_free_events(api: Api) -> None:
    alice = await api.person()
    project_id = await project_with(api, alice)
    task_id = (await create(api, alice, project_id))["id"]

    results = await asyncio.gather(
        *(api.ok(alice, UPDATE_TASK, id=task_id, input={"title": f"Title {i}"}) for i in range(25))
    )
    assert sorted(r["updateTask"]["version"] for r in results) == list(range(2, 27))
    assert (await api.ok(alice, TASK, id=task_id))["task"]["version"] == 26
    rows = await events(project_id)
    assert [e.seq for e in rows] == list(range(1, 27))
    updates = [e for e in rows if e.type == "UPDATED"]
    assert len(updates) == 25
    assert [e.payload["task"]["version"] for e in updates] == list(range(2, 27))


@needs_postgres
async def test_concurrent_writers_with_one_expected_version_one_wins(api: Api) -> None:
    alice = await api.person()
    project_id = await project_with(api, alice)
    task_id = (await create(api, alice, project_id))["id"]

    bodies = await asyncio.gather(
        *(
            api.post(alice, UPDATE_TASK, {"id": task_id, "input": {"title": f"Mine {i}"}, "v": 1})
            for i in range(10)
        )
    )
    winners = [b for b in bodies if not b.get("errors")]
    losers = [b for b in bodies if b.get("errors")]
    assert len(winners) == 1
    assert all(code(b["errors"][0]) == "CONFLICT" for b in losers)
    task = (await api.ok(alice, TASK, id=task_id))["task"]
    assert (task["title"], task["version"]) == (winners[0]["data"]["updateTask"]["title"], 2)
    assert [e.type for e in await events(project_id)] == ["CREATED", "UPDATED"]


@needs_postgres
async def test_concurrent_moves_keep_every_column_dense(api: Api) -> None:
    alice = await api.person()
    project_id = await project_with(api, alice)
    ids = [(await create(api, alice, project_id, f"T{i}"))["id"] for i in range(8)]

    rng = random.Random(7)
    moves = [
        api.ok(alice, MOVE_TASK, id=rng.choice(ids), status=rng.choice(COLUMNS), position=rng.randrange(6))
        for _ in range(30)
    ]
    await asyncio.gather(*moves)
    columns = await board(api, alice, project_id)  # checks positions are 0..n-1 in each column
    assert sorted(task for column in columns.values() for task in column) == sorted(ids)
    assert [e.seq for e in await events(project_id)] == list(range(1, 8 + 30 + 1))
