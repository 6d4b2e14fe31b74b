"""Comments nested in task and ticket lists: a constant number of statements for any page size,
the same pages, counts and cursors as one parent alone, and (PostgreSQL) read through an index."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

import pytest
from tortoise import connections

from pulseboard.models import Role, Task, TaskComment
from pulseboard.resolvers.pagination import PageArgs, counted, ranked_rows
from tests.conftest import ON_POSTGRES
from tests.helpers import Api, Person, code, count_queries

CREATE_PROJECT = "mutation($name: String!) { createProject(input: {name: $name}) { id } }"
ADD_MEMBER = "mutation($p: ID!, $u: ID!) { addProjectMember(projectId: $p, userId: $u) { id } }"
CREATE_TASK = (
    "mutation($p: ID!, $title: String!) { createTask(input: {projectId: $p, title: $title}) { id } }"
)
TASK_COMMENT = "mutation($id: ID!, $body: String!) { addTaskComment(taskId: $id, body: $body) { id } }"
CREATE_QUEUE = "mutation($i: CreateQueueInput!) { createQueue(input: $i) { id } }"
CREATE_TICKET = (
    "mutation($q: ID!, $title: String!) { createTicket(input: {queueId: $q, title: $title}) { id } }"
)
TICKET_COMMENT = "mutation($id: ID!, $body: String!) { addTicketComment(ticketId: $id, body: $body) { id } }"

COMMENTS = """
comments(first: $cf, after: $ca) {
  totalCount
  pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  edges { cursor node { id body author { id } } }
}
"""
TASKS = f"""
query($p: ID!, $first: Int, $cf: Int, $ca: String) {{
  tasks(projectId: $p, first: $first) {{ edges {{ node {{ id {COMMENTS} }} }} }}
}}
"""
TASK = f"query($id: ID!, $cf: Int, $ca: String) {{ task(id: $id) {{ id {COMMENTS} }} }}"
TICKETS = f"""
query($q: ID, $first: Int, $cf: Int, $ca: String) {{
  tickets(queueId: $q, first: $first) {{ edges {{ node {{ id {COMMENTS} }} }} }}
}}
"""
TICKET = f"query($id: ID!, $cf: Int, $ca: String) {{ ticket(id: $id) {{ id {COMMENTS} }} }}"


@dataclass(frozen=True)
class Comment:
    id: str
    body: str
    author: str  # the author's id (emails are only the user's own and admins' to see)


def comment_counts(parents: int) -> list[int]:
    """0 to 5 comments, and one parent with more than the default page of 20."""
    return [21 if i == 3 else i % 6 for i in range(parents)]


async def add_comments(
    api: Api, mutation: str, parents: list[str], people: list[Person], counts: list[int]
) -> dict[str, list[Comment]]:
    """Comments added round-robin, so every parent's ids interleave with the others'."""
    comments: dict[str, list[Comment]] = {parent: [] for parent in parents}
    for n in range(max(counts)):
        for i, parent in enumerate(parents):
            if n < counts[i]:
                who = people[(i + n) % len(people)]
                body = f"{parent}:{n}"
                data = await api.ok(who, mutation, id=parent, body=body)
                comments[parent].append(Comment(next(iter(data.values()))["id"], body, who.id))
    return comments


async def board(api: Api, parents: int) -> tuple[Person, str, dict[str, list[Comment]]]:
    """A project's tasks (in board order) with their comments by several members."""
    people = [await api.person() for _ in range(3)]
    project = (await api.ok(people[0], CREATE_PROJECT, name="Board"))["createProject"]["id"]
    admin = await api.person(Role.ADMIN)  # owners add only people they share something with
    for member in people[1:]:
        await api.ok(admin, ADD_MEMBER, p=project, u=member.id)
    tasks = [
        (await api.ok(people[0], CREATE_TASK, p=project, title=f"T{i}"))["createTask"]["id"]
        for i in range(parents)
    ]
    return people[0], project, await add_comments(api, TASK_COMMENT, tasks, people, comment_counts(parents))


@dataclass
class Desk:
    agent: Person
    requester: Person
    queue: str
    comments: dict[str, list[Comment]]


async def desk(api: Api, parents: int) -> Desk:
    """A queue's tickets (newest first) filed by one member, commented on by them and agents."""
    admin = await api.person(Role.ADMIN)
    team = (await api.ok(admin, 'mutation { createTeam(input: {name: "Desk"}) { id } }'))["createTeam"]["id"]
    inp = {"teamId": team, "name": "Desk", "slaFirstResponseMinutes": 60, "slaResolutionMinutes": 480}
    queue = (await api.ok(admin, CREATE_QUEUE, i=inp))["createQueue"]["id"]
    agents = [await api.person(Role.AGENT) for _ in range(2)]
    for agent in agents:
        await api.ok(
            admin,
            "mutation($t: ID!, $u: ID!) { addTeamMember(teamId: $t, userId: $u) { id } }",
            t=team,
            u=agent.id,
        )
    requester = await api.person()
    tickets = [
        (await api.ok(requester, CREATE_TICKET, q=queue, title=f"K{i}"))["createTicket"]["id"]
        for i in range(parents)
    ]
    tickets.reverse()
    comments = await add_comments(api, TICKET_COMMENT, tickets, [requester, *agents], comment_counts(parents))
    return Desk(agents[0], requester, queue, comments)


def cursor_id(cursor: str) -> int:
    [key] = json.loads(base64.urlsafe_b64decode(cursor))
    return int(key)


def check_page(page: dict, comments: list[Comment], first: int, after: str | None = None) -> None:
    """`page` is the connection of `comments` for first/after, as one parent alone would give."""
    rest = [c for c in comments if after is None or int(c.id) > cursor_id(after)]
    expected = rest[:first]
    edges = page["edges"]
    assert [
        Comment(e["node"]["id"], e["node"]["body"], e["node"]["author"]["id"]) for e in edges
    ] == expected
    assert [cursor_id(e["cursor"]) for e in edges] == [int(c.id) for c in expected]
    assert page["totalCount"] == len(comments)
    assert page["pageInfo"] == {
        "hasNextPage": len(rest) > first,
        "hasPreviousPage": after is not None,
        "startCursor": edges[0]["cursor"] if edges else None,
        "endCursor": edges[-1]["cursor"] if edges else None,
    }


async def end_cursor(api: Api, who: Person, query: str, root: str, parent: str, first: int) -> str:
    """The cursor after the first `first` comments of one task or ticket."""
    page = (await api.ok(who, query, id=parent, cf=first))[root]["comments"]
    return page["pageInfo"]["endCursor"]


def comment_statements(queries: list[str], table: str) -> list[str]:
    return [q for q in queries if f'"{table}"' in q]


# --- tasks


async def test_task_comments_take_the_same_statements_for_5_as_for_30_tasks(api: Api) -> None:
    owner, project, comments = await board(api, 30)
    tasks = list(comments)

    statements = {}
    for first in (5, 30):
        with count_queries() as queries:
            data = await api.ok(owner, TASKS, p=project, first=first, cf=3)
        edges = data["tasks"]["edges"]
        assert [e["node"]["id"] for e in edges] == tasks[:first]
        for edge in edges:
            check_page(edge["node"]["comments"], comments[edge["node"]["id"]], 3)
        # One statement for every page, one for every count.
        assert len(comment_statements(queries, "task_comments")) == 2, queries
        statements[first] = len(queries)
    assert statements[5] == statements[30] <= 7, statements


async def test_task_comments_in_a_list_match_each_task_alone(api: Api) -> None:
    owner, project, comments = await board(api, 8)
    listed = (await api.ok(owner, TASKS, p=project, first=8))["tasks"]["edges"]
    for edge in listed:
        alone = (await api.ok(owner, TASK, id=edge["node"]["id"]))["task"]
        assert edge["node"] == alone
        check_page(alone["comments"], comments[alone["id"]], 20)


async def test_after_pages_every_task_from_the_same_cursor(api: Api) -> None:
    owner, project, comments = await board(api, 8)
    task = list(comments)[3]
    # Walking one task page by page visits each of its comments once, in order.
    seen: list[str] = []
    after = None
    while True:
        page = (await api.ok(owner, TASK, id=task, cf=4, ca=after))["task"]["comments"]
        check_page(page, comments[task], 4, after)
        seen += [e["node"]["id"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == [c.id for c in comments[task]]
    # A cursor is a comment id: in a list it pages each task to what follows that id.
    after = await end_cursor(api, owner, TASK, "task", task, 5)
    for cf in (0, 2, 20):
        edges = (await api.ok(owner, TASKS, p=project, cf=cf, ca=after))["tasks"]["edges"]
        for edge in edges:
            check_page(edge["node"]["comments"], comments[edge["node"]["id"]], cf, after)


async def test_different_comment_pages_in_one_request_are_grouped(api: Api) -> None:
    owner, project, comments = await board(api, 12)
    query = """
    query($p: ID!, $after: String) {
      tasks(projectId: $p) { edges { node { id
        head: comments(first: 1) { edges { node { id } } }
        rest: comments(first: 2, after: $after) { edges { node { id } } pageInfo { hasNextPage } }
        all: comments { totalCount }
      } } }
    }
    """
    after = await end_cursor(api, owner, TASK, "task", list(comments)[3], 5)
    with count_queries() as queries:
        edges = (await api.ok(owner, query, p=project, after=after))["tasks"]["edges"]
    for edge in edges:
        node, mine = edge["node"], comments[edge["node"]["id"]]
        assert [e["node"]["id"] for e in node["head"]["edges"]] == [c.id for c in mine[:1]]
        rest = [c.id for c in mine if int(c.id) > cursor_id(after)]
        assert [e["node"]["id"] for e in node["rest"]["edges"]] == rest[:2]
        assert node["rest"]["pageInfo"]["hasNextPage"] is (len(rest) > 2)
        assert node["all"]["totalCount"] == len(mine)
    # One page statement per distinct (first, after), one count for them all.
    assert len(comment_statements(queries, "task_comments")) == 4, queries


async def test_total_count_is_queried_only_when_selected(api: Api) -> None:
    owner, project, _ = await board(api, 4)
    query = (
        "query($p: ID!) { tasks(projectId: $p) { edges { node { comments { edges { node { id } } } } } } }"
    )
    with count_queries() as queries:
        await api.ok(owner, query, p=project)
    assert [q for q in comment_statements(queries, "task_comments") if "COUNT(" in q.upper()] == []


async def test_bad_comment_arguments_fail_as_before(api: Api) -> None:
    owner, project, comments = await board(api, 2)
    bad: dict[str, list[dict[str, object]]] = {
        "first": [{"cf": -1}, {"cf": 101}],
        "after": [{"ca": "not a cursor"}, {"ca": base64.urlsafe_b64encode(b"[1, 2]").decode()}, {"ca": ""}],
    }
    # Two tasks: the list stays far below any query cost limit, so only the arguments can fail.
    parents: list[tuple[str, dict[str, object]]] = [
        (TASKS, {"p": project, "first": 2}),
        (TASK, {"id": next(iter(comments))}),
    ]
    for field, cases in bad.items():
        for variables in cases:
            for query, extra in parents:
                err = await api.error(owner, query, **extra, **variables)
                assert (code(err), err["extensions"]["field"]) == ("BAD_USER_INPUT", field), variables


async def test_comments_read_in_a_mutation_see_earlier_mutations(api: Api) -> None:
    owner, _, comments = await board(api, 4)
    task = list(comments)[2]
    query = """
    mutation($id: ID!) {
      before: updateTask(id: $id, input: {title: "One"}) { comments { totalCount edges { node { body } } } }
      add: addTaskComment(taskId: $id, body: "late") { id }
      after: updateTask(id: $id, input: {title: "Two"}) { comments { totalCount edges { node { body } } } }
    }
    """
    data = await api.ok(owner, query, id=task)
    bodies = [c.body for c in comments[task]]
    assert data["before"]["comments"]["totalCount"] == len(bodies)
    assert [e["node"]["body"] for e in data["before"]["comments"]["edges"]] == bodies
    assert data["after"]["comments"]["totalCount"] == len(bodies) + 1
    assert [e["node"]["body"] for e in data["after"]["comments"]["edges"]] == [*bodies, "late"]


# --- tickets


async def test_ticket_comments_take_the_same_statements_for_5_as_for_30_tickets(api: Api) -> None:
    d = await desk(api, 30)
    tickets = list(d.comments)

    statements = {}
    for first in (5, 30):
        with count_queries() as queries:
            data = await api.ok(d.agent, TICKETS, q=d.queue, first=first, cf=3)
        edges = data["tickets"]["edges"]
        assert [e["node"]["id"] for e in edges] == tickets[:first]
        for edge in edges:
            check_page(edge["node"]["comments"], d.comments[edge["node"]["id"]], 3)
        assert len(comment_statements(queries, "ticket_comments")) == 2, queries
        statements[first] = len(queries)
    assert statements[5] == statements[30] <= 7, statements


async def test_ticket_comments_in_a_list_match_each_ticket_alone_and_page_with_after(api: Api) -> None:
    d = await desk(api, 6)
    after = await end_cursor(api, d.agent, TICKET, "ticket", list(d.comments)[3], 2)
    for who in (d.agent, d.requester):
        for cf, ca in ((20, None), (2, after)):
            edges = (await api.ok(who, TICKETS, cf=cf, ca=ca))["tickets"]["edges"]
            assert [e["node"]["id"] for e in edges] == list(d.comments)
            for edge in edges:
                alone = (await api.ok(who, TICKET, id=edge["node"]["id"], cf=cf, ca=ca))["ticket"]
                assert edge["node"] == alone
                check_page(alone["comments"], d.comments[alone["id"]], cf, ca)


async def test_ticket_comments_stay_behind_the_tickets_visibility(api: Api) -> None:
    d = await desk(api, 3)
    stranger = await api.person()
    assert (await api.ok(stranger, TICKETS, q=d.queue))["tickets"]["edges"] == []
    err = await api.error(stranger, TICKET, id=next(iter(d.comments)))
    assert code(err) == "NOT_FOUND"
    own = await api.ok(stranger, CREATE_TICKET, q=d.queue, title="Mine")
    edges = (await api.ok(stranger, TICKETS, q=d.queue))["tickets"]["edges"]
    assert [e["node"]["id"] for e in edges] == [own["createTicket"]["id"]]
    assert edges[0]["node"]["comments"]["totalCount"] == 0


# --- PostgreSQL: the plan on a table big enough for the planner to care


@pytest.mark.postgres
@pytest.mark.skipif(
    not ON_POSTGRES, reason="plans are PostgreSQL's (PULSEBOARD_TEST_DATABASE_URL=postgres://...)"
)
async def test_comments_by_task_read_through_the_index(api: Api) -> None:
    owner = await api.person()
    project = (await api.ok(owner, CREATE_PROJECT, name="Big"))["createProject"]["id"]
    author = int(owner.id)
    await Task.bulk_create(
        [Task(project_id=int(project), title=f"T{i}", position=i, created_by_id=author) for i in range(100)]
    )
    ids = [t.id for t in await Task.filter(project_id=int(project)).order_by("id")]
    await TaskComment.bulk_create(
        [TaskComment(task_id=ids[i % 100], author_id=author, body="x" * 80) for i in range(5000)],
        batch_size=1000,
    )
    db = connections.get("default")
    await db.execute_script("ANALYZE task_comments")

    some = ids[:5]
    middle = (await TaskComment.all().order_by("id").offset(2500).first()).id  # type: ignore[union-attr]
    plans = []
    for args in (PageArgs(limit=10, after=None), PageArgs(limit=10, after=(middle,))):
        sql, values = ranked_rows(db, TaskComment, "task_id", some, args).get_parameterized_sql()
        plans.append(await explain(sql, values))
    plans.append(await explain(counted(TaskComment, "task_id", some).sql(params_inline=True), []))
    for plan in plans:
        assert "task_comments_task_idx" in plan, plan
        assert "Seq Scan on task_comments" not in plan, plan


async def explain(sql: str, values: list) -> str:
    _, rows = await connections.get("default").execute_query(f"EXPLAIN {sql}", values)
    return "\n".join(row["QUERY PLAN"] for row in rows)
