"""Keyset pagination of connections: first/after and last/before, cursors and their errors."""

from __future__ import annotations

import base64
import dataclasses
from dataclasses import dataclass

import pytest

from pulseboard.models import Role
from pulseboard.settings import Settings
from tests.helpers import Api, Person, code, count_queries, serving

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


# --- backward: last and before ----------------------------------------------------------------

ARGS = "first: $first, after: $after, last: $last, before: $before"
VARIABLES = "$first: Int, $after: String, $last: Int, $before: String"
CONNECTION = f"totalCount edges {{ cursor node {{ id }} }} {PAGE_INFO}"
BOTH_WAYS = {
    "tasks": f"query($p: ID!, {VARIABLES}) {{ tasks(projectId: $p, {ARGS}) {{ {CONNECTION} }} }}",
    "projects": f"query({VARIABLES}) {{ projects({ARGS}) {{ {CONNECTION} }} }}",
    "tickets": f"query($q: ID, {VARIABLES}) {{ tickets(queueId: $q, {ARGS}) {{ {CONNECTION} }} }}",
    "notifications": f"query({VARIABLES}) {{ notifications({ARGS}) {{ {CONNECTION} }} }}",
    "comments": f"query($t: ID!, {VARIABLES}) {{ ticket(id: $t) {{ comments({ARGS}) {{ {CONNECTION} }} }} }}",
    "taskComments": f"query($t: ID!, {VARIABLES}) {{ task(id: $t) {{ comments({ARGS}) {{ {CONNECTION} }} }} }}",  # noqa: E501
    "queues": f"query({VARIABLES}) {{ queues({ARGS}) {{ {CONNECTION} }} }}",
    "users": f"query({VARIABLES}) {{ users({ARGS}) {{ {CONNECTION} }} }}",
}
ADMIN_SETUP = """
mutation($n: String!) { createTeam(input: {name: $n}) { id } }
"""
CREATE_QUEUE = """
mutation($t: ID!) {
  createQueue(input: {teamId: $t, name: "Desk", slaFirstResponseMinutes: 60, slaResolutionMinutes: 600}) {
    id
  }
}
"""
CREATE_TICKET = "mutation($q: ID!, $t: String!) { createTicket(input: {queueId: $q, title: $t}) { id } }"
COMMENT = "mutation($id: ID!, $b: String!) { addTicketComment(ticketId: $id, body: $b) { id } }"
TASK_COMMENT = "mutation($id: ID!, $b: String!) { addTaskComment(taskId: $id, body: $b) { id } }"
ADD_MEMBER = "mutation($p: ID!, $u: ID!) { addProjectMember(projectId: $p, userId: $u) { id } }"
ASSIGN = "mutation($id: ID!, $u: ID) { assignTask(id: $id, assigneeId: $u) { id } }"


def connection_of(data: dict, root: str) -> dict:
    if root == "comments":
        return data["ticket"]["comments"]  # type: ignore[no-any-return]
    if root == "taskComments":
        return data["task"]["comments"]  # type: ignore[no-any-return]
    return data[root]  # type: ignore[no-any-return]


@dataclass
class Listing:
    """A connection with `count` items, as its viewer reads it forward."""

    root: str
    who: Person
    variables: dict[str, object]
    forward: list[str]

    async def page(self, api: Api, **arguments: object) -> dict:
        data = await api.ok(self.who, BOTH_WAYS[self.root], **self.variables, **arguments)
        return connection_of(data, self.root)

    async def error(self, api: Api, **arguments: object) -> dict:
        return await api.error(self.who, BOTH_WAYS[self.root], **self.variables, **arguments)


async def listing(api: Api, root: str, count: int) -> Listing:
    """`count` items of the connection `root`, made through the API."""
    admin, alice = await api.person(Role.ADMIN), await api.person()
    if root == "tasks":
        project_id, ordered = await board_with_tasks(api, alice, count)
        return Listing(root, alice, {"p": project_id}, ordered)
    if root == "projects":
        ids = [
            (await api.ok(alice, CREATE_PROJECT, name=f"P{i}"))["createProject"]["id"] for i in range(count)
        ]
        return Listing(root, alice, {}, ids)
    if root == "taskComments":
        project_id = (await api.ok(alice, CREATE_PROJECT, name="Board"))["createProject"]["id"]
        task_id = (await api.ok(alice, CREATE_TASK, p=project_id, title="Talk"))["createTask"]["id"]
        ids = [
            (await api.ok(alice, TASK_COMMENT, id=task_id, b=f"C{i}"))["addTaskComment"]["id"]
            for i in range(count)
        ]
        return Listing(root, alice, {"t": task_id}, ids)
    if root == "queues":
        team = (await api.ok(admin, ADMIN_SETUP, n="Support"))["createTeam"]["id"]
        ids = [(await api.ok(admin, CREATE_QUEUE, t=team))["createQueue"]["id"] for _ in range(count)]
        return Listing(root, admin, {}, ids)
    if root == "users":  # alice and the people an admin added to her project
        project_id = (await api.ok(alice, CREATE_PROJECT, name="Board"))["createProject"]["id"]
        ids = [alice.id] + [(await api.person()).id for _ in range(count - 1)]
        for user_id in ids[1:]:
            await api.ok(admin, ADD_MEMBER, p=project_id, u=user_id)
        return Listing(root, alice, {}, ids)  # in the order they first signed in
    if root == "notifications":
        project_id = (await api.ok(admin, CREATE_PROJECT, name="Board"))["createProject"]["id"]
        await api.ok(admin, ADD_MEMBER, p=project_id, u=alice.id)
        for i in range(count):
            task_id = (await api.ok(admin, CREATE_TASK, p=project_id, title=f"T{i}"))["createTask"]["id"]
            await api.ok(admin, ASSIGN, id=task_id, u=alice.id)
        forward = (await api.ok(alice, BOTH_WAYS[root], first=100))["notifications"]["edges"]
        assert len(forward) == count
        return Listing(root, alice, {}, [edge["node"]["id"] for edge in forward])
    team = (await api.ok(admin, ADMIN_SETUP, n="Support"))["createTeam"]["id"]
    queue = (await api.ok(admin, CREATE_QUEUE, t=team))["createQueue"]["id"]
    if root == "tickets":
        ids = [
            (await api.ok(alice, CREATE_TICKET, q=queue, t=f"T{i}"))["createTicket"]["id"]
            for i in range(count)
        ]
        return Listing(root, alice, {"q": queue}, ids[::-1])  # newest first
    ticket = (await api.ok(alice, CREATE_TICKET, q=queue, t="Talk"))["createTicket"]["id"]
    ids = [
        (await api.ok(alice, COMMENT, id=ticket, b=f"C{i}"))["addTicketComment"]["id"] for i in range(count)
    ]
    return Listing(root, alice, {"t": ticket}, ids)


async def walk_back(api: Api, listed: Listing, last: int) -> list[str]:
    """Every id of the connection, from its end to its start, checking pageInfo along the way;
    each page is in forward order."""
    seen: list[str] = []
    before = None
    while True:
        page = await listed.page(api, last=last, before=before)
        ids = [edge["node"]["id"] for edge in page["edges"]]
        assert len(ids) <= last
        assert page["totalCount"] == len(listed.forward)
        info = page["pageInfo"]
        assert info["hasNextPage"] is (before is not None)
        assert info["startCursor"] == (page["edges"][0]["cursor"] if ids else None)
        assert info["endCursor"] == (page["edges"][-1]["cursor"] if ids else None)
        seen = ids + seen
        if not info["hasPreviousPage"]:
            return seen
        assert len(ids) == last
        before = info["startCursor"]


ROOTS = list(BOTH_WAYS)


@pytest.mark.parametrize("root", ROOTS)
async def test_walking_backward_visits_each_once_in_forward_order(api: Api, root: str) -> None:
    listed = await listing(api, root, 7)
    for last in (1, 3, 7, 100):
        assert await walk_back(api, listed, last) == listed.forward, last


@pytest.mark.parametrize("root", ROOTS)
async def test_last_before_is_the_items_just_before_the_cursor(api: Api, root: str) -> None:
    listed = await listing(api, root, 7)
    edges = (await listed.page(api, first=7))["edges"]
    page = await listed.page(api, last=2, before=edges[5]["cursor"])
    assert [e["node"]["id"] for e in page["edges"]] == listed.forward[3:5]
    assert [e["cursor"] for e in page["edges"]] == [edges[3]["cursor"], edges[4]["cursor"]]
    assert page["pageInfo"] == {
        "hasNextPage": True,
        "hasPreviousPage": True,
        "startCursor": edges[3]["cursor"],
        "endCursor": edges[4]["cursor"],
    }
    start = await listed.page(api, last=5, before=edges[2]["cursor"])
    assert [e["node"]["id"] for e in start["edges"]] == listed.forward[:2]
    assert start["pageInfo"]["hasPreviousPage"] is False
    between = await listed.page(api, first=10, after=edges[1]["cursor"], before=edges[5]["cursor"])
    assert [e["node"]["id"] for e in between["edges"]] == listed.forward[2:5]
    assert between["pageInfo"]["hasNextPage"] is False


@pytest.mark.parametrize("root", ROOTS)
async def test_last_without_before_is_the_last_items(api: Api, root: str) -> None:
    listed = await listing(api, root, 5)
    page = await listed.page(api, last=2)
    assert [e["node"]["id"] for e in page["edges"]] == listed.forward[3:]
    assert page["totalCount"] == 5
    assert (page["pageInfo"]["hasNextPage"], page["pageInfo"]["hasPreviousPage"]) == (False, True)
    everything = await listed.page(api, last=5)
    assert [e["node"]["id"] for e in everything["edges"]] == listed.forward
    assert everything["pageInfo"]["hasPreviousPage"] is False
    none = await listed.page(api, last=0)
    assert none["edges"] == [] and none["pageInfo"]["hasPreviousPage"] is True


async def test_before_alone_pages_backward_by_the_default_size(api: Api) -> None:
    listed = await listing(api, "tasks", 23)
    end = (await listed.page(api, first=23))["edges"][-1]["cursor"]
    page = await listed.page(api, before=end)
    assert [e["node"]["id"] for e in page["edges"]] == listed.forward[2:22]
    assert page["pageInfo"]["hasPreviousPage"] is True


@pytest.mark.parametrize("root", ROOTS)
async def test_first_and_last_together_are_bad_input(api: Api, root: str) -> None:
    listed = await listing(api, root, 2)
    err = await listed.error(api, first=1, last=1)
    assert (code(err), err["extensions"]["field"]) == ("BAD_USER_INPUT", "last")


@pytest.mark.parametrize("last", [-1, 101])
@pytest.mark.parametrize("root", ROOTS)
async def test_last_out_of_range_is_bad_input(api: Api, root: str, last: int) -> None:
    listed = await listing(api, root, 1)
    err = await listed.error(api, last=last)
    assert (code(err), err["extensions"]["field"]) == ("BAD_USER_INPUT", "last")
    assert len((await listed.page(api, last=100))["edges"]) == 1


@pytest.mark.parametrize("root", ROOTS)
@pytest.mark.parametrize("cursor", ["garbage", b64("[1, 2, 3, 4]"), b64("[99999999999]"), b64("[7, 0, 1]")])
async def test_a_malformed_before_cursor_is_bad_input(api: Api, root: str, cursor: str) -> None:
    listed = await listing(api, root, 2)
    for arguments in ({"last": 1, "before": cursor}, {"first": 1, "before": cursor}):
        err = await listed.error(api, **arguments)
        assert (code(err), err["extensions"]["field"]) == ("BAD_USER_INPUT", "before")


async def test_a_before_cursor_survives_deletes_in_a_reordered_column(api: Api) -> None:
    """Re-anchored like `after`: with the old key, the cursor's own task (moved up a place by the
    delete) would be taken as one before it."""
    alice = await api.person()
    project_id = (await api.ok(alice, CREATE_PROJECT, name="Board"))["createProject"]["id"]
    ids = [(await api.ok(alice, CREATE_TASK, p=project_id, title=n))["createTask"]["id"] for n in "ABCD"]
    for task_id in ids:  # each to the top: the column now reads D, C, B, A
        await api.ok(alice, MOVE_TASK, id=task_id, status="TODO", position=0)
    d, c, b, a = (await api.ok(alice, TASKS, p=project_id, first=4))["tasks"]["edges"]
    assert [e["node"]["id"] for e in (d, c, b, a)] == ids[::-1]

    await api.ok(alice, DELETE_TASK, id=d["node"]["id"])
    query = BOTH_WAYS["tasks"]
    rest = (await api.ok(alice, query, p=project_id, last=5, before=b["cursor"]))["tasks"]
    assert [e["node"]["id"] for e in rest["edges"]] == [c["node"]["id"]]
    rest = (await api.ok(alice, query, p=project_id, last=5, before=a["cursor"]))["tasks"]
    assert [e["node"]["id"] for e in rest["edges"]] == [c["node"]["id"], b["node"]["id"]]


async def test_each_tickets_last_comments_in_one_page_of_tickets(api: Api) -> None:
    """Nested pages backward: every parent's last comments, in one statement for the list."""
    listed = await listing(api, "comments", 5)
    queue = (
        await api.ok(listed.who, "query($t: ID!) { ticket(id: $t) { queue { id } } }", **listed.variables)
    )["ticket"]["queue"]["id"]
    other = (await api.ok(listed.who, CREATE_TICKET, q=queue, t="Other"))["createTicket"]["id"]
    mine = [
        (await api.ok(listed.who, COMMENT, id=other, b=f"O{i}"))["addTicketComment"]["id"] for i in range(3)
    ]
    query = """query($q: ID) { tickets(queueId: $q) { edges { node { id
      comments(last: 2) { edges { node { id } } pageInfo { hasPreviousPage hasNextPage } } } } } }"""
    with count_queries() as statements:
        edges = (await api.ok(listed.who, query, q=queue))["tickets"]["edges"]
    pages = {e["node"]["id"]: e["node"]["comments"] for e in edges}
    assert [c["node"]["id"] for c in pages[other]["edges"]] == mine[1:]
    assert [c["node"]["id"] for c in pages[str(listed.variables["t"])]["edges"]] == listed.forward[3:]
    assert all(p["pageInfo"] == {"hasPreviousPage": True, "hasNextPage": False} for p in pages.values())
    assert len([s for s in statements if "ticket_comments" in s]) == 1, statements


async def test_last_costs_what_first_costs(settings: Settings) -> None:
    """The cost estimate counts a backward page as it counts a forward one."""

    def nested(word: str) -> str:
        comments = f"comments({word}: 100) {{ edges {{ node {{ id }} }} }}"
        return f"query {{ tickets({word}: 100) {{ edges {{ node {{ {comments} }} }} }} }}"

    async with serving(dataclasses.replace(settings, max_query_cost=1000)) as api:
        alice = await api.person()
        forward = await api.error(alice, nested("first"))
        backward = await api.error(alice, nested("last"))
        assert code(forward) == code(backward) == "QUERY_TOO_COMPLEX"
        assert backward["extensions"] == forward["extensions"]
        assert backward["extensions"]["estimate"] > 1000
