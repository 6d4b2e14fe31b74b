"""orderBy and search on tasks and tickets: each order pages both ways, stays right as priorities
change, and search filters by title or description, ignoring case, with LIKE's wildcards literal."""

from __future__ import annotations

import pytest

from tests.helpers import Api, Person, code
from tests.test_pagination import CREATE_PROJECT
from tests.test_tickets import PRIORITY, Desk, file, make_desk

CREATE_TASK = """
mutation($p: ID!, $t: String!, $d: String, $s: TaskStatus, $pr: TaskPriority) {
  createTask(input: {projectId: $p, title: $t, description: $d, status: $s, priority: $pr}) { id }
}"""
UPDATE_TASK = "mutation($id: ID!, $pr: TaskPriority) { updateTask(id: $id, input: {priority: $pr}) { id } }"
TASKS = """
query($p: ID!, $order: TaskOrder!, $search: String, $first: Int, $after: String, $last: Int,
      $before: String) {
  tasks(projectId: $p, orderBy: $order, search: $search, first: $first, after: $after, last: $last,
        before: $before) {
    totalCount edges { cursor node { id title } } pageInfo { hasNextPage hasPreviousPage }
  }
}"""
TICKETS = """
query($q: ID, $order: TicketOrder!, $search: String, $first: Int, $after: String, $last: Int,
      $before: String) {
  tickets(queueId: $q, orderBy: $order, search: $search, first: $first, after: $after, last: $last,
          before: $before) {
    totalCount edges { cursor node { id title } } pageInfo { hasNextPage hasPreviousPage }
  }
}"""
BULK = """
mutation($ids: [ID!]!, $pr: TicketPriority) { bulkUpdateTickets(ids: $ids, input: {priority: $pr}) { id } }
"""


async def walked(api: Api, who: Person, query: str, root: str, **variables: object) -> list[str]:
    """Every id of the list, two at a time forward; checked against the walk backward."""
    forward: list[str] = []
    after = None
    while True:
        page = (await api.ok(who, query, first=2, after=after, **variables))[root]
        forward += [e["node"]["id"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["edges"][-1]["cursor"]
    backward: list[str] = []
    before = None
    while True:
        page = (await api.ok(who, query, last=2, before=before, **variables))[root]
        backward = [e["node"]["id"] for e in page["edges"]] + backward
        if not page["pageInfo"]["hasPreviousPage"]:
            break
        before = page["edges"][0]["cursor"]
    assert backward == forward
    return forward


async def board(api: Api, who: Person) -> tuple[str, dict[str, str]]:
    """A project with five tasks over two columns and all priorities: their ids by title."""
    project = (await api.ok(who, CREATE_PROJECT, name="Sorted"))["createProject"]["id"]
    ids = {}
    for title, status, priority in [
        ("a", "DONE", "LOW"),
        ("b", "TODO", "URGENT"),
        ("c", "TODO", "MEDIUM"),
        ("d", "IN_PROGRESS", "URGENT"),
        ("e", "TODO", "HIGH"),
    ]:
        created = await api.ok(who, CREATE_TASK, p=project, t=title, s=status, pr=priority)
        ids[title] = created["createTask"]["id"]
    return project, ids


@pytest.mark.parametrize(
    ("order", "titles"),
    [
        ("BOARD", "bceda"),  # TODO b c e, IN_PROGRESS d, DONE a
        ("NEWEST", "edcba"),
        ("OLDEST", "abcde"),
        ("PRIORITY", "bdeca"),  # URGENT b d (oldest first), HIGH e, MEDIUM c, LOW a
    ],
)
async def test_tasks_page_both_ways_in_each_order(api: Api, order: str, titles: str) -> None:
    alice = await api.person()
    project, ids = await board(api, alice)
    assert await walked(api, alice, TASKS, "tasks", p=project, order=order) == [ids[t] for t in titles]


async def test_a_changed_priority_moves_a_task_in_priority_order(api: Api) -> None:
    alice = await api.person()
    project, ids = await board(api, alice)
    await api.ok(alice, UPDATE_TASK, id=ids["a"], pr="URGENT")
    await api.ok(alice, UPDATE_TASK, id=ids["b"], pr="LOW")
    expected = [ids[t] for t in "adecb"]
    assert await walked(api, alice, TASKS, "tasks", p=project, order="PRIORITY") == expected


async def desk_with_tickets(api: Api) -> tuple[Desk, dict[str, str]]:
    desk = await make_desk(api)
    ids = {}
    for title, priority in [("a", "LOW"), ("b", "URGENT"), ("c", "NORMAL"), ("d", "URGENT"), ("e", "HIGH")]:
        ids[title] = (await file(api, desk.requester, desk.queue, title=title, priority=priority))["id"]
    return desk, ids


@pytest.mark.parametrize(
    ("order", "titles"), [("NEWEST", "edcba"), ("OLDEST", "abcde"), ("PRIORITY", "bdeca")]
)
async def test_tickets_page_both_ways_in_each_order(api: Api, order: str, titles: str) -> None:
    desk, ids = await desk_with_tickets(api)
    for who in (desk.agent, desk.requester, desk.admin):
        listed = await walked(api, who, TICKETS, "tickets", q=desk.queue, order=order)
        assert listed == [ids[t] for t in titles], who


async def test_changed_ticket_priorities_move_tickets_in_priority_order(api: Api) -> None:
    desk, ids = await desk_with_tickets(api)
    await api.ok(desk.agent, PRIORITY, id=ids["a"], priority="URGENT")
    await api.ok(desk.agent, BULK, ids=[ids["b"], ids["d"]], pr="LOW")
    expected = [ids[t] for t in "aecbd"]
    assert await walked(api, desk.agent, TICKETS, "tickets", q=desk.queue, order="PRIORITY") == expected


async def test_search_finds_title_or_description_ignoring_case(api: Api) -> None:
    alice = await api.person()
    project = (await api.ok(alice, CREATE_PROJECT, name="Search"))["createProject"]["id"]
    ids = {}
    for title, description in [
        ("Printer on fire", ""),
        ("Coffee machine", "the PRINTER next to it smokes"),
        ("Scanner", "nothing to see"),
        ("100% done_soon", ""),
        ("100x doneXsoon", ""),
    ]:
        ids[title] = (await api.ok(alice, CREATE_TASK, p=project, t=title, d=description))["createTask"]["id"]

    async def found(search: str | None, order: str = "OLDEST") -> list[str]:
        return await walked(api, alice, TASKS, "tasks", p=project, order=order, search=search)

    assert await found("printer") == [ids["Printer on fire"], ids["Coffee machine"]]
    assert await found("  PRINTER  ", "NEWEST") == [ids["Coffee machine"], ids["Printer on fire"]]
    # LIKE's wildcards match only themselves.
    assert await found("100%") == [ids["100% done_soon"]]
    assert await found("done_soon") == [ids["100% done_soon"]]
    assert await found("nowhere") == []
    # A cleared search box filters nothing.
    assert len(await found("")) == len(await found("   ")) == len(await found(None)) == 5
    page = (await api.ok(alice, TASKS, p=project, order="BOARD", search="printer"))["tasks"]
    assert page["totalCount"] == 2


async def test_search_finds_tickets_only_among_those_the_viewer_may_see(api: Api) -> None:
    desk = await make_desk(api)
    mine = await file(api, desk.requester, desk.queue, title="VPN is down")
    other = await api.person()
    theirs = await file(api, other, desk.queue, title="VPN slow", description="")
    await file(api, other, desk.queue, title="Mail", description="no vpn either")

    async def found(who: Person) -> list[str]:
        return await walked(api, who, TICKETS, "tickets", q=desk.queue, order="OLDEST", search="vpn")

    assert await found(desk.requester) == [mine["id"]]
    assert (await found(other))[0] == theirs["id"] and len(await found(other)) == 2
    assert len(await found(desk.agent)) == 3


@pytest.mark.parametrize(("root", "query"), [("tasks", TASKS), ("tickets", TICKETS)])
async def test_a_search_too_long_or_not_one_line_is_bad_input(api: Api, root: str, query: str) -> None:
    desk = await make_desk(api)
    project = (await api.ok(desk.admin, CREATE_PROJECT, name="P"))["createProject"]["id"]
    variables = {"p": project, "order": "BOARD"} if root == "tasks" else {"q": desk.queue, "order": "NEWEST"}
    for search in ("x" * 101, "two\nlines"):
        error = await api.error(desk.admin, query, search=search, **variables)
        assert (code(error), error["extensions"]["field"]) == ("BAD_USER_INPUT", "search")
    assert (await api.ok(desk.admin, query, search="x" * 100, **variables))[root]["edges"] == []


async def test_an_unknown_order_names_the_variable(api: Api) -> None:
    alice = await api.person()
    project = (await api.ok(alice, CREATE_PROJECT, name="P"))["createProject"]["id"]
    error = await api.error(alice, TASKS, p=project, order="SIDEWAYS")
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "order"}
