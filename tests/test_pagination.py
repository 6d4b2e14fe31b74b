"""Keyset pagination of connections (tasks and projects): first/after, cursors and their errors."""

from __future__ import annotations

import base64

import pytest

from tests.helpers import Api, Person, code, count_queries

CREATE_PROJECT = "mutation($name: String!) { createProject(input: {name: $name}) { id } }"
CREATE_TASK = """
mutation($p: ID!, $title: String!, $status: TaskStatus) {
  createTask(input: {projectId: $p, title: $title, status: $status}) { id }
}
"""
MOVE_TASK = """
mutation($id: ID!, $status: TaskStatus!, $position: Int!) {
  moveTask(id: $id, status: $status, position: $position) { id }
}
"""
DELETE_TASK = "mutation($id: ID!) { deleteTask(id: $id) { id } }"
PAGE_INFO = "pageInfo { hasNextPage hasPreviousPage startCursor endCursor }"
TASKS = f"""
query($p: ID!, $first: Int, $after: String) {{
  tasks(projectId: $p, first: $first, after: $after) {{
    totalCount edges {{ cursor node {{ id }} }} {PAGE_INFO}
  }}
}}
"""
PROJECTS = f"""
query($first: Int, $after: String) {{
  projects(first: $first, after: $after) {{ totalCount edges {{ cursor node {{ id }} }} {PAGE_INFO} }}
}}
"""


async def board_with_tasks(api: Api, who: Person, count: int) -> tuple[str, list[str]]:
    """A project whose tasks, spread over columns, are returned in board order."""
    project_id = (await api.ok(who, CREATE_PROJECT, name="Board"))["createProject"]["id"]
    columns: dict[str, list[str]] = {"TODO": [], "IN_PROGRESS": [], "DONE": []}
    for i in range(count):
        status = ("DONE", "TODO", "IN_PROGRESS")[i % 3]
        data = await api.ok(who, CREATE_TASK, p=project_id, title=f"T{i}", status=status)
        columns[status].append(data["createTask"]["id"])
    return project_id, [task_id for ids in columns.values() for task_id in ids]


async def walk(api: Api, who: Person, query: str, root: str, first: int, **variables: object) -> list[str]:
    """Every id of a connection, page by page, checking pageInfo along the way."""
    seen: list[str] = []
    after = None
    while True:
        page = (await api.ok(who, query, first=first, after=after, **variables))[root]
        ids = [edge["node"]["id"] for edge in page["edges"]]
        assert len(ids) <= first
        info = page["pageInfo"]
        assert info["hasPreviousPage"] is (after is not None)
        assert info["endCursor"] == (page["edges"][-1]["cursor"] if ids else None)
        seen += ids
        if not info["hasNextPage"]:
            return seen
        assert len(ids) == first
        after = info["endCursor"]


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


async def test_walking_tasks_visits_each_once_in_board_order(api: Api) -> None:
    alice = await api.person()
    project_id, ordered = await board_with_tasks(api, alice, 11)
    for first in (1, 3, 11, 100):
        assert await walk(api, alice, TASKS, "tasks", first, p=project_id) == ordered, first


async def test_walking_projects_visits_each_once_in_order(api: Api) -> None:
    alice = await api.person()
    ids = [(await api.ok(alice, CREATE_PROJECT, name=f"P{i}"))["createProject"]["id"] for i in range(5)]
    assert await walk(api, alice, PROJECTS, "projects", 2) == ids
    assert await walk(api, alice, PROJECTS, "projects", 5) == ids


async def test_first_defaults_to_twenty(api: Api) -> None:
    alice = await api.person()
    project_id, ordered = await board_with_tasks(api, alice, 21)
    page = (await api.ok(alice, TASKS, p=project_id))["tasks"]
    assert [e["node"]["id"] for e in page["edges"]] == ordered[:20]
    assert page["pageInfo"]["hasNextPage"] is True
    assert page["totalCount"] == 21


async def test_first_zero_returns_no_edges(api: Api) -> None:
    alice = await api.person()
    project_id, _ = await board_with_tasks(api, alice, 3)
    page = (await api.ok(alice, TASKS, p=project_id, first=0))["tasks"]
    assert page["edges"] == []
    assert page["totalCount"] == 3
    assert (page["pageInfo"]["startCursor"], page["pageInfo"]["endCursor"]) == (None, None)


async def test_first_zero_still_reports_a_next_page(api: Api) -> None:
    alice = await api.person()
    project_id, _ = await board_with_tasks(api, alice, 3)
    page = (await api.ok(alice, TASKS, p=project_id, first=0))["tasks"]
    assert page["pageInfo"]["hasNextPage"] is True


@pytest.mark.parametrize("first", [-1, 101])
async def test_first_out_of_range_is_bad_input(api: Api, first: int) -> None:
    alice = await api.person()
    project_id, _ = await board_with_tasks(api, alice, 1)
    for query, variables in ((TASKS, {"p": project_id}), (PROJECTS, {})):
        err = await api.error(alice, query, first=first, **variables)
        assert (code(err), err["extensions"]["field"]) == ("BAD_USER_INPUT", "first")
    assert len((await api.ok(alice, TASKS, p=project_id, first=100))["tasks"]["edges"]) == 1


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        b64("not json"),
        b64('{"id": 1}'),
        b64("[1, 2]"),  # a task cursor has three parts
        b64("[1, 2, 3, 4]"),
        b64('[1, "2", 3]'),
        b64("[1, 2.5, 3]"),
        b64("[true, 1, 1]"),
        b64("[1, 2, null]"),
        b64("[7, 0, 1]"),  # no such column
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ],
)
async def test_a_malformed_cursor_is_bad_input(api: Api, cursor: str) -> None:
    alice = await api.person()
    project_id, _ = await board_with_tasks(api, alice, 2)
    err = await api.error(alice, TASKS, p=project_id, first=1, after=cursor)
    assert (code(err), err["extensions"]["field"]) == ("BAD_USER_INPUT", "after")


async def test_a_cursor_beyond_the_integer_range_is_bad_input(api: Api) -> None:
    alice = await api.person()
    project_id, _ = await board_with_tasks(api, alice, 2)
    for query, variables in (
        (TASKS, {"p": project_id, "after": b64("[1, 2, 99999999999]")}),
        (PROJECTS, {"after": b64("[99999999999]")}),
    ):
        err = await api.error(alice, query, first=1, **variables)
        assert (code(err), err["extensions"]["field"]) == ("BAD_USER_INPUT", "after")


async def test_a_cursor_of_another_connection_is_bad_input(api: Api) -> None:
    alice = await api.person()
    project_id, _ = await board_with_tasks(api, alice, 2)
    task_cursor = (await api.ok(alice, TASKS, p=project_id, first=1))["tasks"]["pageInfo"]["endCursor"]
    err = await api.error(alice, PROJECTS, first=1, after=task_cursor)
    assert (code(err), err["extensions"]["field"]) == ("BAD_USER_INPUT", "after")


async def test_a_cursor_survives_deleting_the_items_before_it(api: Api) -> None:
    alice = await api.person()
    project_id, ordered = await board_with_tasks(api, alice, 9)
    page = (await api.ok(alice, TASKS, p=project_id, first=4))["tasks"]
    for task_id in ordered[:4]:
        await api.ok(alice, DELETE_TASK, id=task_id)
    rest = (await api.ok(alice, TASKS, p=project_id, after=page["pageInfo"]["endCursor"]))["tasks"]
    assert [e["node"]["id"] for e in rest["edges"]] == ordered[4:]

    projects = [(await api.ok(alice, CREATE_PROJECT, name=f"P{i}"))["createProject"]["id"] for i in range(3)]
    cursor = (await api.ok(alice, PROJECTS, first=2))["projects"]["pageInfo"]["endCursor"]
    await api.ok(alice, MOVE_TASK, id=ordered[4], status="DONE", position=0)  # unrelated write
    rest = (await api.ok(alice, PROJECTS, after=cursor))["projects"]
    assert [e["node"]["id"] for e in rest["edges"]] == projects[1:]


async def test_a_task_cursor_survives_deletes_in_a_reordered_column(api: Api) -> None:
    # Positions shift when a task above is deleted; ids need not follow positions after moves.
    alice = await api.person()
    project_id = (await api.ok(alice, CREATE_PROJECT, name="Board"))["createProject"]["id"]
    ids = [(await api.ok(alice, CREATE_TASK, p=project_id, title=n))["createTask"]["id"] for n in "ABCD"]
    for task_id in ids:  # each to the top: the column now reads D, C, B, A
        await api.ok(alice, MOVE_TASK, id=task_id, status="TODO", position=0)
    d, c, b, a = (await api.ok(alice, TASKS, p=project_id, first=4))["tasks"]["edges"]
    assert [e["node"]["id"] for e in (d, c, b, a)] == ids[::-1]

    await api.ok(alice, DELETE_TASK, id=d["node"]["id"])
    rest = (await api.ok(alice, TASKS, p=project_id, after=c["cursor"]))["tasks"]
    assert [e["node"]["id"] for e in rest["edges"]] == [b["node"]["id"], a["node"]["id"]]


BOARD = """
query($p: ID!) { tasks(projectId: $p, first: 2) { ...counted edges { node { id createdBy { name } } } } }
fragment counted on TaskConnection { totalCount }
"""


async def test_a_board_page_is_two_statements(api: Api) -> None:
    """The page, its visibility and its totalCount (asked for through a fragment) are one
    statement; the people who created the tasks a second. A project out of sight is still NOT_FOUND."""
    alice, outsider = await api.person(), await api.person()
    project_id, ordered = await board_with_tasks(api, alice, 3)
    await api.ok(alice, BOARD, p=project_id)  # the viewer is read once, then remembered
    with count_queries() as statements:
        page = (await api.ok(alice, BOARD, p=project_id))["tasks"]
    assert page["totalCount"] == 3 and [e["node"]["id"] for e in page["edges"]] == ordered[:2]
    assert len(statements) == 2, statements
    assert code(await api.error(outsider, BOARD, p=project_id)) == "NOT_FOUND"
    assert code(await api.error(alice, BOARD, p="424242")) == "NOT_FOUND"
