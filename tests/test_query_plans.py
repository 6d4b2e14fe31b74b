"""Every list the API offers reads through an index (PostgreSQL): the plans of the statements the
main list queries really send, on a dataset big enough for the planner to prefer an index.

How: the test database is seeded with a few INSERT ... SELECT FROM generate_series statements
(20k users, 500 projects with their members, 50k tasks, tickets and notifications, comments,
events), vacuumed and analysed. Each case's GraphQL request then runs through the app as the
viewer it is for (member, agent, requester, admin) while the SQL Tortoise sends is captured with
its parameters, and every captured SELECT is run again under EXPLAIN (ANALYZE, FORMAT JSON) with
the same parameters. Each case runs twice: as a page alone, and with totalCount (a first page
then counts in the same statement, with COUNT(*) OVER ()).

The rules, on actual row counts (estimates can be far off, and then hide what a plan does):

- No Seq Scan of a large table (LARGE).
- No node drops more than DROPPED_MAX rows by a filter no index applied: ten pages read to throw
  away is a scan in disguise (often the whole primary key, walked newest first).
- Order from the index. A Sort over a large table's rows may take no more rows than the statement
  returns (sorting what is returned, like a page's members in user order, is not paging), or
  than one page where the list's order has an index (its filter is that index's prefix), or
  SORT_ROWS_MAX where filters are combined and no one index carries them and the order (a queue
  by priority: the rows the queue's index found are sorted). An Incremental Sort passes when
  the index delivers every sort key but the last, the id that breaks ties among equal positions.

The lists under test are hundreds to thousands of rows (a board: 2,500; a queue, a requester's
tickets, a task's comments: 250; a viewer's notifications: 500), each a small share of its table
as in production, where the planner prefers the list's index to walking the primary key: an
order no index serves then has to sort or drop more rows than these limits allow.

KNOWN lists what breaks a rule for a reason no index fixes, in the SQL as written (REASONS says
what, and how it could be written instead). Each must still break its rule, so that it is struck
off once the statement is fixed; INHERENT ones (an admin's count of every ticket) may or may not.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest
from tortoise import connections

from pulseboard.models import Role
from pulseboard.resolvers.pagination import encode_cursor
from tests.conftest import ON_POSTGRES
from tests.helpers import Api, Person, tortoise_records

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        not ON_POSTGRES, reason="plans are PostgreSQL's (PULSEBOARD_TEST_DATABASE_URL=postgres://...)"
    ),
]

LARGE = frozenset(
    {
        "tasks",
        "tickets",
        "notifications",
        "task_comments",
        "ticket_comments",
        "project_members",
        "users",
        "events",
    }
)
PAGE_ROWS = 51  # first: 50, and the one more that tells whether a next page follows
SORT_ROWS_MAX = 250
DROPPED_MAX = 500

# The viewers' own rows, by the seeded ids below.
BOARD = 1  # the member's big project: every 20th task (2,500)
QUEUE = 1  # a queue of the agent's team: every 200th ticket (250)
TASK = 20  # a task of BOARD with 250 comments
TICKET = 39800  # a ticket of QUEUE, requested by the requester, with 250 comments


def seed_stages(member: int, agent: int, requester: int, admin: int) -> list[list[str]]:
    """The seed, in stages whose statements run side by side (each on its own connection): users
    101..20100 (every 100th an agent), 20 teams with 3 queues each, 500 projects with 30 members
    each; then 50k tasks, 50k tickets, 50k notifications and 20k events; then 50k comments of
    tasks and 50k of tickets. A viewer's rows are spread over the id range, as time spreads them."""
    people = f"""
    INSERT INTO users (id, sub, email, name, role, created_at)
    SELECT 100 + g, 'seed-' || g, 'seed' || g || '@example.test', 'Seed ' || g,
           CASE WHEN g % 100 = 0 THEN 'AGENT' ELSE 'MEMBER' END, now()
    FROM generate_series(1, 20000) g;
    SELECT setval(pg_get_serial_sequence('users', 'id'), 20101);

    INSERT INTO teams (id, name, created_at) SELECT t, 'Team ' || t, now() FROM generate_series(1, 20) t;
    SELECT setval(pg_get_serial_sequence('teams', 'id'), 21);
    INSERT INTO team_members (team_id, user_id, created_at)
    SELECT 1 + j % 20, 100 + 100 * j, now() FROM generate_series(1, 200) j
    UNION ALL SELECT 1, {agent}, now();
    INSERT INTO queues (id, team_id, name, sla_first_response_minutes, sla_resolution_minutes, created_at)
    SELECT q, 1 + (q - 1) % 20, 'Queue ' || q, 60, 1440, now() FROM generate_series(1, 60) q;
    SELECT setval(pg_get_serial_sequence('queues', 'id'), 61);

    INSERT INTO projects (id, name, description, created_by_id, created_at)
    SELECT p, 'Project ' || p, '', 100 + p, now() FROM generate_series(1, 500) p;
    SELECT setval(pg_get_serial_sequence('projects', 'id'), 501);
    INSERT INTO project_members (project_id, user_id, role, created_at)
    SELECT p, 101 + (p * 37 + k * 97) % 20000, CASE WHEN k = 0 THEN 'OWNER' ELSE 'MEMBER' END, now()
    FROM generate_series(1, 500) p, generate_series(0, 29) k
    UNION ALL SELECT p, {member}, 'MEMBER', now() FROM generate_series(1, 10) p;
    """
    tasks = f"""
    INSERT INTO tasks (id, project_id, title, description, status, position, priority, urgency,
                       progress, assignee_id, created_by_id, created_at, updated_at, version)
    SELECT i, p, 'Task ' || i, '', s, row_number() OVER (PARTITION BY p, s ORDER BY i) - 1,
           (ARRAY['LOW', 'MEDIUM', 'HIGH', 'URGENT'])[1 + i % 4], 3 - i % 4, 0,
           CASE WHEN i % 7 = 3 THEN NULL WHEN p = {BOARD} AND i % 200 = 20 THEN {member}
                ELSE 101 + (p * 37 + (i % 30) * 97) % 20000 END,
           101 + (p * 37) % 20000, now(), now(), 1
    FROM (SELECT i, CASE WHEN i % 20 = 0 THEN {BOARD} ELSE 2 + i % 499 END AS p, 1 + (i / 7) % 4 AS s
          FROM generate_series(1, 50000) i) t;
    SELECT setval(pg_get_serial_sequence('tasks', 'id'), 50001);
    """
    tickets = f"""
    INSERT INTO tickets (id, queue_id, title, description, status, priority, urgency, requester_id,
                         assignee_id, created_at, updated_at, version)
    SELECT i, q, 'Ticket ' || i, '',
           (ARRAY['NEW', 'OPEN', 'PENDING', 'RESOLVED', 'CLOSED'])[1 + (i / 20 + i / 50) % 5],
           (ARRAY['LOW', 'NORMAL', 'HIGH', 'URGENT'])[1 + (i / 100 + i / 7) % 4], 3 - (i / 100 + i / 7) % 4,
           CASE WHEN i % 199 = 0 THEN {requester} WHEN i % 199 = 100 THEN {member}
                ELSE 101 + (i * 13) % 20000 END,
           CASE WHEN i % 7 = 3 THEN NULL WHEN q = {QUEUE} AND i % 800 = 0 THEN {agent}
                ELSE 100 + 100 * (1 + i % 200) END,
           now(), now(), 1
    FROM (SELECT i, CASE WHEN i % 200 = 0 THEN {QUEUE} ELSE 2 + i % 59 END AS q
          FROM generate_series(1, 50000) i) t;
    SELECT setval(pg_get_serial_sequence('tickets', 'id'), 50001);
    """
    # The member's: a third about tasks of BOARD, a third about tickets they requested. The
    # admin's: about any task or ticket.
    notifications = f"""
    INSERT INTO notifications (user_id, type, title, body, task_id, ticket_id, read_at, created_at)
    SELECT CASE WHEN i % 100 = 0 THEN {member} WHEN i % 100 = 50 THEN {admin}
                ELSE 101 + i % 20000 END,
           'TASK_ASSIGNED', 'Notification ' || i, '',
           CASE WHEN i % 100 = 0 THEN (CASE WHEN i % 3 = 1 THEN 20 * (1 + i % 2500) END)
                WHEN i % 3 = 0 THEN 1 + i % 50000 END,
           CASE WHEN i % 100 = 0 THEN (CASE WHEN i % 3 = 0 THEN 100 + 199 * (i % 251) END)
                WHEN i % 3 = 1 THEN 1 + i % 50000 END,
           CASE WHEN (i / 7) % 4 = 0 THEN NULL ELSE now() END, now()
    FROM generate_series(1, 50000) i;
    """
    events = """
    INSERT INTO events (topic, seq, type, payload, created_at)
    SELECT 'project:' || (1 + e % 500), 1 + e / 500, 'CREATED', '{}', now()
    FROM generate_series(1, 20000) e;
    """
    task_comments = f"""
    INSERT INTO task_comments (task_id, author_id, body, created_at)
    SELECT CASE WHEN c % 200 = 0 THEN {TASK} ELSE 1 + (c * 7) % 50000 END, 101 + c % 20000,
           'Comment ' || c, now()
    FROM generate_series(1, 50000) c;
    """
    ticket_comments = f"""
    INSERT INTO ticket_comments (ticket_id, author_id, body, created_at)
    SELECT CASE WHEN c % 200 = 0 THEN {TICKET} ELSE 1 + (c * 7) % 50000 END, 101 + c % 20000,
           'Comment ' || c, now()
    FROM generate_series(1, 50000) c;
    """
    return [[people], [tasks, tickets, notifications, events], [task_comments, ticket_comments]]


ANALYSED = sorted(LARGE | {"projects", "queues", "teams", "team_members"})


async def vacuum(conn: asyncpg.Connection, tables: list[str]) -> None:
    for table in tables:
        await conn.execute(f"VACUUM ANALYZE {table}")


@dataclass
class Seeded:
    people: dict[str, Person]
    cursors: dict[str, str]


async def seed(api: Api) -> Seeded:
    people = {
        "member": await api.person(Role.MEMBER),
        "agent": await api.person(Role.AGENT),
        "requester": await api.person(Role.MEMBER),
        "admin": await api.person(Role.ADMIN),
    }
    ids = {name: int(person.id) for name, person in people.items()}
    assert max(ids.values()) <= 100, ids  # below the seeded users' ids
    url = api.settings.database_url.replace("postgres://", "postgresql://", 1)
    conns = [await asyncpg.connect(url) for _ in range(4)]
    try:
        for stage in seed_stages(ids["member"], ids["agent"], ids["requester"], ids["admin"]):
            await asyncio.gather(*(conn.execute(sql) for conn, sql in zip(conns, stage, strict=False)))
        # Vacuumed, as autovacuum keeps tables in use (index-only scans count on it), and analysed
        # from every row rather than a sample, so that the plans are the same on every run.
        await asyncio.gather(*(conn.execute("SET default_statistics_target = 1000") for conn in conns))
        shares = [ANALYSED[i :: len(conns)] for i in range(len(conns))]
        await asyncio.gather(*(vacuum(conn, tables) for conn, tables in zip(conns, shares, strict=True)))
    finally:
        await asyncio.gather(*(conn.close() for conn in conns))

    # Cursors from the middle of each list: a page far from the first.
    db = connections.get("default")
    _, found = await db.execute_query(
        "SELECT id, status, position FROM tasks WHERE project_id = $1 AND status = 2 AND position = 550",
        [BOARD],
    )
    task = found[0]
    _, found = await db.execute_query(
        "SELECT max(id) AS id FROM notifications WHERE user_id = $1 AND id < 25000", [ids["member"]]
    )
    return Seeded(
        people=people,
        cursors={
            "task": encode_cursor([task["status"], task["position"], task["id"]]),
            "ticket": encode_cursor([25000]),
            "notification": encode_cursor([found[0]["id"]]),
            "comment": encode_cursor([25000]),
        },
    )


# --- capturing what Tortoise sends, and reading its plans


def _statement(record: logging.LogRecord) -> tuple[str, list[Any]] | None:
    if isinstance(record.args, tuple) and len(record.args) == 2:
        sql, values = record.args
        return str(sql), list(values or [])
    return None


def captured() -> AbstractContextManager[list[tuple[str, list[Any]]]]:
    """The (SQL, parameters) of each statement Tortoise sends inside the block: asyncpg's client
    logs them as the two arguments of a debug record on "tortoise.db_client"."""
    return tortoise_records(_statement)


def selects(statements: list[tuple[str, list[Any]]]) -> list[tuple[str, list[Any]]]:
    """The distinct SELECTs among `statements`, in the order they were sent."""
    distinct = {
        (sql, repr(values)): (sql, values)
        for sql, values in statements
        if sql.lstrip().upper().startswith(("SELECT", "WITH"))
    }
    return list(distinct.values())


async def plan_of(sql: str, values: list[Any]) -> dict[str, Any]:
    """The plan PostgreSQL runs `sql` with, run (read-only statements): actual counts included."""
    explain = f"EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) {sql}"
    _, found = await connections.get("default").execute_query(explain, values)
    document = found[0]["QUERY PLAN"]
    return (json.loads(document) if isinstance(document, str) else document)[0]["Plan"]


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def rows(node: dict[str, Any]) -> int:
    """The rows a node returned, over all its loops."""
    return round(node["Actual Rows"] * node["Actual Loops"])


def dropped(node: dict[str, Any]) -> int:
    """The rows a node read and dropped by a condition no index applied, over all its loops."""
    keys = ("Rows Removed by Filter", "Rows Removed by Join Filter", "Rows Removed by Index Recheck")
    return round(sum(node.get(key, 0) for key in keys) * node["Actual Loops"])


def reads_large(node: dict[str, Any]) -> bool:
    return any(n.get("Relation Name") in LARGE for n in nodes(node))


def violations(plan: dict[str, Any], sort_max: int) -> list[str]:
    """What in `plan` breaks the rules (the module's docstring), one line each."""
    found = []
    returned = rows(plan)
    for node in nodes(plan):
        kind, table = node["Node Type"], node.get("Relation Name")
        if kind == "Seq Scan" and table in LARGE:
            found.append(f"Seq Scan on {table}")
        if dropped(node) > DROPPED_MAX:
            found.append(f"{kind}{f' on {table}' if table else ''} dropped {dropped(node)} rows")
        if kind == "Sort" and reads_large(node):
            into = sum(rows(child) for child in node["Plans"])
            if into > max(sort_max, returned):
                found.append(f"Sort of {into} rows by {', '.join(node['Sort Key'])}")
        if kind == "Incremental Sort" and len(node["Presorted Key"]) < len(node["Sort Key"]) - 1:
            found.append(f"Incremental Sort by {', '.join(node['Sort Key'])} beyond ties")
    return found


def short(text: object, limit: int = 300) -> str:
    text = str(text)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def render(plan: dict[str, Any], depth: int = 0) -> str:
    """The plan as an outline: node, relation, index, actual rows (and dropped), conditions."""
    parts = [plan["Node Type"]]
    if "Relation Name" in plan:
        parts.append(f"on {plan['Relation Name']}")
    if "Index Name" in plan:
        parts.append(f"using {plan['Index Name']}")
    parts.append(f"rows={rows(plan)}")
    if dropped(plan):
        parts.append(f"dropped={dropped(plan)}")
    for key in ("Index Cond", "Filter", "Join Filter", "Hash Cond", "Sort Key", "Presorted Key"):
        if key in plan:
            parts.append(f"{key}: {short(plan[key], 200)}")
    lines = ["  " * depth + " ".join(parts)]
    lines.extend(render(child, depth + 1) for child in plan.get("Plans", []))
    return "\n".join(lines)


# --- the cases


TASK_FIELDS = "id title status position priority assignee { id name }"
TICKET_FIELDS = "id title status priority requester { id name } assignee { id name }"
PAGE = "totalCount pageInfo { hasNextPage endCursor }"
COMMENTS = "comments(first: $cf, after: $ca) { totalCount edges { node { id body author { id name } } } }"

TASKS = f"""
query($p: ID!, $status: TaskStatus, $assignee: ID, $after: String, $order: TaskOrder! = BOARD,
      $search: String) {{
  tasks(projectId: $p, status: $status, assigneeId: $assignee, first: 50, after: $after,
        orderBy: $order, search: $search) {{
    {PAGE} edges {{ node {{ {TASK_FIELDS} }} }}
  }}
}}
"""
TASKS_WITH_COMMENTS = f"""
query($p: ID!, $cf: Int, $ca: String) {{
  tasks(projectId: $p, first: 50) {{ {PAGE} edges {{ node {{ id {COMMENTS} }} }} }}
}}
"""
TICKETS = f"""
query($q: ID, $status: TicketStatus, $priority: TicketPriority, $assignee: ID, $after: String,
      $order: TicketOrder! = NEWEST, $search: String) {{
  tickets(queueId: $q, status: $status, priority: $priority, assigneeId: $assignee, first: 50,
          after: $after, orderBy: $order, search: $search) {{
    {PAGE} edges {{ node {{ {TICKET_FIELDS} }} }}
  }}
}}
"""
TICKETS_WITH_COMMENTS = f"""
query($q: ID, $cf: Int, $ca: String) {{
  tickets(queueId: $q, first: 50) {{ {PAGE} edges {{ node {{ id {COMMENTS} }} }} }}
}}
"""
NOTIFICATIONS = f"""
query($unread: Boolean!, $after: String) {{
  notifications(first: 50, unreadOnly: $unread, after: $after) {{
    {PAGE} unreadCount edges {{ node {{ id title readAt taskId ticketId }} }}
  }}
}}
"""
PROJECTS = f"""
query($after: String) {{
  projects(first: 50, after: $after) {{
    {PAGE} edges {{ node {{ id name createdBy {{ id }} members {{ id name }}
                           memberships {{ role user {{ id }} }} }} }}
  }}
}}
"""
# An admin's page of 50 projects has 1,500 members: a twentieth of these users, read by a Seq Scan
# as it should be at this size. The members of a page are the member's case.
PROJECTS_ONLY = (
    f"query {{ projects(first: 50) {{ {PAGE} edges {{ node {{ id name createdBy {{ id }} }} }} }}}}"
)
QUEUES = f"query {{ queues(first: 50) {{ {PAGE} edges {{ node {{ id name team {{ id name }} }} }} }} }}"
TASK_COMMENTS = f"query($id: ID!, $cf: Int, $ca: String) {{ task(id: $id) {{ id {COMMENTS} }} }}"
TICKET_COMMENTS = f"query($id: ID!, $cf: Int, $ca: String) {{ ticket(id: $id) {{ id {COMMENTS} }} }}"


def backward(query: str) -> str:
    """`query` paging backward: last and before where it says first and after."""
    for forward, back in (
        ("first: 50", "last: 50"),
        ("first: $cf, after: $ca", "last: $cf, before: $ca"),
        ("after: $after", "before: $before"),
        ("$after: String", "$before: String"),
    ):
        query = query.replace(forward, back)
    return query


FLAVORS = ("page", "counted")  # without totalCount, and with it


@dataclass
class Case:
    name: str
    viewer: str  # member, agent, requester or admin
    query: str
    variables: dict[str, Any] = field(default_factory=dict)
    # The list's order has an index (its filter is the index's prefix): at most a page is sorted.
    ordered: bool = True

    def document(self, flavor: str) -> str:
        return self.query if flavor == "counted" else self.query.replace("totalCount ", "")


def cases(s: Seeded) -> list[Case]:
    member, agent = s.people["member"].id, s.people["agent"].id
    board, queue = str(BOARD), str(QUEUE)
    first = {"cf": 20, "ca": None}
    later = {"cf": 20, "ca": s.cursors["comment"]}
    return [
        # A project's board, as a member: by column and position, filtered, and a later page.
        Case("tasks", "member", TASKS, {"p": board}),
        Case("tasks by status", "member", TASKS, {"p": board, "status": "IN_PROGRESS"}),
        Case("tasks by assignee", "member", TASKS, {"p": board, "assignee": member}),
        Case("tasks after", "member", TASKS, {"p": board, "after": s.cursors["task"]}),
        Case(
            "tasks by status after",
            "member",
            TASKS,
            {"p": board, "status": "IN_PROGRESS", "after": s.cursors["task"]},
        ),
        Case("tasks with comments", "member", TASKS_WITH_COMMENTS, {"p": board, **first}),
        # Tickets, newest first: an agent's queue, filtered, a later page; all an agent may see.
        Case("tickets of a queue, agent", "agent", TICKETS, {"q": queue}),
        Case("tickets of a queue by status, agent", "agent", TICKETS, {"q": queue, "status": "OPEN"}),
        Case(
            "tickets of a queue by priority, agent",
            "agent",
            TICKETS,
            {"q": queue, "priority": "HIGH"},
            ordered=False,
        ),
        Case(
            "tickets of a queue by assignee, agent",
            "agent",
            TICKETS,
            {"q": queue, "assignee": agent},
            ordered=False,
        ),
        Case("tickets of a queue after, agent", "agent", TICKETS, {"q": queue, "after": s.cursors["ticket"]}),
        Case("tickets with comments, agent", "agent", TICKETS_WITH_COMMENTS, {"q": queue, **first}),
        Case("tickets an agent may see", "agent", TICKETS, {}),
        Case("tickets assigned to an agent", "agent", TICKETS, {"assignee": agent}),
        # A requester's own tickets.
        Case("tickets of a requester", "requester", TICKETS, {}),
        Case("tickets of a requester in a queue", "requester", TICKETS, {"q": queue}, ordered=False),
        Case("tickets of a requester by status", "requester", TICKETS, {"status": "OPEN"}, ordered=False),
        Case("tickets of a requester after", "requester", TICKETS, {"after": s.cursors["ticket"]}),
        Case("tickets with comments, requester", "requester", TICKETS_WITH_COMMENTS, first),
        # Admins see every ticket.
        Case("tickets, admin", "admin", TICKETS, {}),
        Case("tickets after, admin", "admin", TICKETS, {"after": s.cursors["ticket"]}),
        Case("tickets by status, admin", "admin", TICKETS, {"status": "OPEN"}, ordered=False),
        Case("tickets of a queue, admin", "admin", TICKETS, {"q": queue}),
        Case("tickets of a queue by status, admin", "admin", TICKETS, {"q": queue, "status": "OPEN"}),
        Case(
            "tickets of a queue by priority, admin",
            "admin",
            TICKETS,
            {"q": queue, "priority": "URGENT"},
            ordered=False,
        ),
        # A viewer's notifications, newest first.
        Case("notifications", "member", NOTIFICATIONS, {"unread": False}),
        Case(
            "notifications after",
            "member",
            NOTIFICATIONS,
            {"unread": False, "after": s.cursors["notification"]},
        ),
        Case("notifications unread", "member", NOTIFICATIONS, {"unread": True}, ordered=False),
        Case(
            "notifications unread after",
            "member",
            NOTIFICATIONS,
            {"unread": True, "after": s.cursors["notification"]},
            ordered=False,
        ),
        Case("notifications, admin", "admin", NOTIFICATIONS, {"unread": False}),
        # Projects, with their members for a member; queues.
        Case("projects of a member", "member", PROJECTS),
        Case("projects, admin", "admin", PROJECTS_ONLY),
        Case("queues", "agent", QUEUES),
        # One task's and one ticket's comments: the first page and a later one.
        Case("comments of a task", "member", TASK_COMMENTS, {"id": str(TASK), **first}),
        Case("comments of a task after", "member", TASK_COMMENTS, {"id": str(TASK), **later}),
        Case("comments of a ticket, agent", "agent", TICKET_COMMENTS, {"id": str(TICKET), **first}),
        Case(
            "comments of a ticket after, requester",
            "requester",
            TICKET_COMMENTS,
            {"id": str(TICKET), **later},
        ),
        # Other orders, and a search (its rows are found by trigram indexes, then sorted).
        Case("tasks newest first", "member", TASKS, {"p": board, "order": "NEWEST"}),
        Case("tasks by priority", "member", TASKS, {"p": board, "order": "PRIORITY"}),
        Case("tasks searched", "member", TASKS, {"p": board, "search": "task 4242"}, ordered=False),
        Case(
            "tickets of a queue by priority order, agent", "agent", TICKETS, {"q": queue, "order": "PRIORITY"}
        ),
        Case("tickets of a queue oldest first, admin", "admin", TICKETS, {"q": queue, "order": "OLDEST"}),
        Case("tickets searched, admin", "admin", TICKETS, {"search": "ticket 3980"}, ordered=False),
        Case(
            "tickets of a queue searched, agent",
            "agent",
            TICKETS,
            {"q": queue, "search": "ticket 3980"},
            ordered=False,
        ),
        # Backward (last, before): the same indexes, read from the other end.
        Case("tasks last", "member", backward(TASKS), {"p": board}),
        Case("tasks before", "member", backward(TASKS), {"p": board, "before": s.cursors["task"]}),
        Case(
            "tickets of a queue before, agent",
            "agent",
            backward(TICKETS),
            {"q": queue, "before": s.cursors["ticket"]},
        ),
        Case(
            "tickets of a requester before", "requester", backward(TICKETS), {"before": s.cursors["ticket"]}
        ),
        Case("tickets before, admin", "admin", backward(TICKETS), {"before": s.cursors["ticket"]}),
        Case(
            "notifications before",
            "member",
            backward(NOTIFICATIONS),
            {"unread": False, "before": s.cursors["notification"]},
        ),
        Case("projects last", "member", backward(PROJECTS)),
        Case(
            "comments of a ticket before, requester",
            "requester",
            backward(TICKET_COMMENTS),
            {"id": str(TICKET), **later},
        ),
    ]


def edges(data: dict[str, Any]) -> int:
    """How many edges the answer's list has (a single task's or ticket's: its comments')."""
    (root,) = data.values()
    return len((root.get("comments") or root)["edges"])


# --- what the SQL as written cannot do, whatever the indexes

REASONS = {
    "keyset": (
        "The after cursor of the board is an OR of three comparisons (status > s, or status = s and"
        " position > p, or ...): only project_id (and a status filter) is an index condition, so a"
        " page far down a column reads the board from its top and drops what precedes the cursor"
        " (a before cursor, from its end, what follows it)."
        " A row comparison, (status, position, id) > (s, p, i), is one: PostgreSQL then starts the"
        " index scan at the cursor (pagination._after)."
    ),
    "agent visibility": (
        "An agent's visibility is requester_id = me OR queues.team_id IN (my teams), through a LEFT"
        " JOIN of queues: no index applies to an OR across two tables, and PostgreSQL, estimating it"
        " at a twentieth of the rows, reads a queue through a bitmap and sorts all of it instead of"
        " walking tickets_queue_idx (as it does for an admin, with no OR); without a queue it walks"
        " the primary key and drops what the agent may not see. Deciding visibility for the queue"
        " asked for once (the agent works it: no OR), and queue_id IN (the agent's queue ids)"
        " otherwise, would let the indexes serve it (access.visible_tickets)."
    ),
    "admin notifications": (
        "For an admin, a notification's task or ticket is visible if it exists: task_id IN (SELECT"
        " id FROM tasks) and ticket_id IN (SELECT id FROM tickets), under an OR with IS NULL, are"
        " hashed subplans that read every task and every ticket on each request (an EXISTS is planned"
        " the same). A LEFT JOIN of tasks and tickets on their ids (IS NULL or found) probes their"
        " primary keys for the page's rows only (notifications.visible)."
    ),
    "ranked comments": (
        "A list's comments are paged for all its parents at once by ROW_NUMBER() OVER (PARTITION BY"
        " parent ORDER BY id) <= n: every comment of each parent (after the cursor) is read and"
        " ranked, and PostgreSQL reads them through a bitmap and sorts them. On PostgreSQL a LATERAL"
        " subquery per parent, ORDER BY id LIMIT n, reads n rows off the (parent, id) index"
        " (pagination.ranked_rows)."
    ),
    "count of everything": (
        "An admin's totalCount of every ticket, or of every ticket of a status (a fifth here), reads"
        " that share of the table whatever the index. On a first page the window count does it with"
        " the page: PostgreSQL 15 costs COUNT(*) OVER () as if it streamed, picks the primary-key walk"
        " a LIMIT would stop early, and the window reads the whole table through it (fixed in"
        " PostgreSQL 17, commit 3900a02)."
    ),
}


def known(reason: str, rule: str, *names: str, flavors: tuple[str, ...] = FLAVORS) -> dict:
    return {(name, flavor, rule): reason for name in names for flavor in flavors}


# (case, flavor, what the violation says) -> its reason.
KNOWN: dict[tuple[str, str, str], str] = {
    **known("keyset", "dropped", "tasks after", "tasks by status after", "tasks before"),
    **known(
        "agent visibility",
        "Sort of",
        "tickets of a queue, agent",
        "tickets of a queue after, agent",
        "tickets of a queue before, agent",
        "tickets of a queue by priority order, agent",
        "tickets with comments, agent",
        "tickets assigned to an agent",
    ),
    **known("agent visibility", "dropped", "tickets an agent may see"),
    **known("admin notifications", "Seq Scan on tasks", "notifications, admin"),
    **known("admin notifications", "Seq Scan on tickets", "notifications, admin"),
    **known(
        "ranked comments",
        "Sort of",
        "comments of a task",
        "comments of a task after",
        "comments of a ticket, agent",
        "comments of a ticket after, requester",
        "comments of a ticket before, requester",
    ),
    # Any rule: a whole read, by a Seq Scan or through an index, as the planner finds cheaper.
    **known(
        "count of everything", "", "tickets after, admin", "tickets by status, admin", flavors=("counted",)
    ),
}
# What no statement can do better: it may break a rule or not, and stays listed.
INHERENT = {"count of everything"}
assert set(KNOWN.values()) <= set(REASONS) >= INHERENT


@dataclass
class Report:
    unexpected: list[str] = field(default_factory=list)
    known: dict[tuple[str, str, str], str] = field(default_factory=dict)  # KNOWN's, as they were
    plans: int = 0


async def check(api: Api, seeded: Seeded, case: Case, flavor: str, report: Report) -> None:
    with captured() as statements:
        data = await api.ok(seeded.people[case.viewer], case.document(flavor), **case.variables)
    assert edges(data) > 0, (case.name, flavor, data)
    sent = selects(statements)
    assert sent, (case.name, flavor)
    for sql, values in sent:
        plan = await plan_of(sql, values)
        report.plans += 1
        for violation in violations(plan, PAGE_ROWS if case.ordered else SORT_ROWS_MAX):
            rule = next((r for (n, f, r) in KNOWN if (n, f) == (case.name, flavor) and r in violation), None)
            if rule is not None:
                report.known[case.name, flavor, rule] = violation
                continue
            report.unexpected.append(
                f"{case.name} ({flavor}): {violation}\n  {short(sql)}\n  {short(values)}\n{render(plan)}"
            )


async def test_list_queries_read_through_indexes(api: Api) -> None:
    seeded = await seed(api)
    report = Report()
    for case in cases(seeded):
        for flavor in FLAVORS:
            await check(api, seeded, case, flavor, report)
    assert not report.unexpected, f"{len(report.unexpected)} of {report.plans} plans:\n\n" + "\n\n".join(
        report.unexpected
    )
    fixed = [
        f"{name} ({flavor}): {rule}"
        for (name, flavor, rule), reason in KNOWN.items()
        if reason not in INHERENT and (name, flavor, rule) not in report.known
    ]
    assert not fixed, "no longer so, strike them off KNOWN: " + "; ".join(fixed)
