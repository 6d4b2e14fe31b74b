"""Boards kept from task events alone: every event names the other tasks it shifted along their
columns (`displaced`) and what changed, so applying events keeps a client's board equal to the
server's. Comments travel with their COMMENTED events; a member who leaves is unassigned."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pulseboard.models import Event, Role
from pulseboard.subscriptions.encoding import cursor
from tests.conftest import ON_POSTGRES
from tests.live import TIMEOUT, WS, LiveServer, http_client, ws

PROJECT = "mutation($n: String!) { createProject(input: {name: $n}) { id } }"
ADD_MEMBER = "mutation($p: ID!, $u: ID!) { addProjectMember(projectId: $p, userId: $u) { id } }"
REMOVE_MEMBER = "mutation($p: ID!, $u: ID!) { removeProjectMember(projectId: $p, userId: $u) { id } }"
CREATE = """mutation($p: ID!, $t: String!, $s: TaskStatus, $a: ID) {
  createTask(input: {projectId: $p, title: $t, status: $s, assigneeId: $a}) { id }
}"""
MOVE = """mutation($id: ID!, $s: TaskStatus!, $at: Int!) {
  moveTask(id: $id, status: $s, position: $at) { id status position progress completedAt }
}"""
COMPLETE = "mutation($id: ID!) { completeTask(id: $id) { id position } }"
DELETE = "mutation($id: ID!) { deleteTask(id: $id) { id } }"
UPDATE = "mutation($id: ID!, $i: UpdateTaskInput!) { updateTask(id: $id, input: $i) { id } }"
ASSIGN = "mutation($id: ID!, $a: ID) { assignTask(id: $id, assigneeId: $a) { id } }"
COMMENT = "mutation($id: ID!, $b: String!) { addTaskComment(taskId: $id, body: $b) { id } }"
EVENTS = """subscription($p: ID!, $after: String) {
  taskEvents(projectId: $p, after: $after) {
    cursor type changes { field from to }
    task { id title status position progress completedAt version assignee { id } }
    displaced { id status position }
    comment { id body author { id name } }
  }
}"""
BOARD = """query($p: ID!, $after: String) {
  tasks(projectId: $p, first: 50, after: $after) {
    edges { node { id title status position progress version assignee { id } } }
    pageInfo { hasNextPage endCursor }
  }
}"""

Board = dict[str, dict[str, Any]]  # task id -> its fields as the tasks query shows them


def card(task: dict[str, Any]) -> dict[str, Any]:
    """The fields a board shows of a task (of a `tasks` node or an event's `task`)."""
    assignee = task["assignee"]
    return {
        "title": task["title"],
        "status": task["status"],
        "position": task["position"],
        "progress": task["progress"],
        "assignee": None if assignee is None else assignee["id"],
    }


def apply(board: Board, event: dict[str, Any]) -> None:
    """What a client does with a task event: its task as the event has it (gone, if DELETED),
    and every displaced task where the event says it is now."""
    task = event["task"]
    if event["type"] == "DELETED":
        board.pop(task["id"], None)
    else:
        board[task["id"]] = card(task)
    for moved in event["displaced"]:
        board[moved["id"]]["status"] = moved["status"]
        board[moved["id"]]["position"] = moved["position"]


def columns(board: Board) -> dict[str, list[str]]:
    """Task ids per column in position order, after checking each column is exactly 0..n-1."""
    by_status: dict[str, list[tuple[int, str]]] = {}
    for task_id, task in board.items():
        by_status.setdefault(task["status"], []).append((task["position"], task_id))
    result = {}
    for status, entries in by_status.items():
        entries.sort()
        assert [position for position, _ in entries] == list(range(len(entries))), (status, entries)
        result[status] = [task_id for _, task_id in entries]
    return result


async def server_board(live: LiveServer, token: str, project: str) -> Board:
    """The whole board as the `tasks` query pages through it."""
    board: Board = {}
    after = None
    while True:
        page = (await live.gql(token, BOARD, p=project, after=after))["tasks"]
        for edge in page["edges"]:
            board[edge["node"]["id"]] = card(edge["node"])
        if not page["pageInfo"]["hasNextPage"]:
            return board
        after = page["pageInfo"]["endCursor"]


async def subscribed(client: WS, project: str, after: str | None = None) -> None:
    await client.subscribe("1", EVENTS, p=project, after=after)
    await client.send({"type": "ping"})  # answered after the subscribe was processed
    assert await client.receive() == {"type": "pong"}
    await asyncio.sleep(0.05)


async def user_id(live: LiveServer, token: str) -> str:
    return (await live.gql(token, "{ viewer { id } }"))["viewer"]["id"]  # type: ignore[no-any-return]


async def tasks_in(live: LiveServer, token: str, project: str, status: str, *titles: str) -> list[str]:
    return [(await live.gql(token, CREATE, p=project, t=t, s=status))["createTask"]["id"] for t in titles]


class Follower:
    """A subscriber that keeps a board from the events alone, starting from the server's."""

    def __init__(self, live: LiveServer, token: str, project: str, client: WS) -> None:
        self.live, self.token, self.project, self.client = live, token, project, client
        self.board: Board = {}

    async def start(self) -> Follower:
        await subscribed(self.client, self.project)
        self.board = await server_board(self.live, self.token, self.project)
        return self

    async def next(self) -> dict[str, Any]:
        """The next event, applied; the board it leaves must be valid."""
        event: dict[str, Any] = (await self.client.next("1"))["taskEvents"]
        apply(self.board, event)
        columns(self.board)
        return event

    async def matches(self) -> None:
        """Once every event of what was written has arrived: the board is the server's."""
        assert self.board == await server_board(self.live, self.token, self.project)


async def test_moving_up_within_a_column_displaces_the_tasks_it_passes(live: LiveServer) -> None:
    token = live.token("ada@example.test")
    p = (await live.gql(token, PROJECT, n="Board"))["createProject"]["id"]
    a, b, c, d, e = await tasks_in(live, token, p, "TODO", *"ABCDE")
    async with ws(live, token) as client:
        follower = await Follower(live, token, p, client).start()
        await live.gql(token, MOVE, id=d, s="TODO", at=1)
        event = await follower.next()
        await follower.matches()
    assert event["type"] == "MOVED"
    assert (event["task"]["id"], event["task"]["position"]) == (d, 1)
    assert event["changes"] == [{"field": "position", "from": "3", "to": "1"}]
    # A and E stay where they were: only the two D jumped over are displaced.
    assert event["displaced"] == [
        {"id": b, "status": "TODO", "position": 2},
        {"id": c, "status": "TODO", "position": 3},
    ]
    assert columns(follower.board)["TODO"] == [a, d, b, c, e]


async def test_moving_down_within_a_column_displaces_the_tasks_it_passes(live: LiveServer) -> None:
    token = live.token("ada@example.test")
    p = (await live.gql(token, PROJECT, n="Board"))["createProject"]["id"]
    a, b, c, d, e = await tasks_in(live, token, p, "TODO", *"ABCDE")
    async with ws(live, token) as client:
        follower = await Follower(live, token, p, client).start()
        await live.gql(token, MOVE, id=b, s="TODO", at=3)
        down = await follower.next()
        await live.gql(token, MOVE, id=b, s="TODO", at=3)  # where it is already: nothing shifts
        still = await follower.next()
        await follower.matches()
    assert down["changes"] == [{"field": "position", "from": "1", "to": "3"}]
    assert down["displaced"] == [
        {"id": c, "status": "TODO", "position": 1},
        {"id": d, "status": "TODO", "position": 2},
    ]
    assert (still["changes"], still["displaced"]) == ([], [])
    assert columns(follower.board)["TODO"] == [a, c, d, b, e]


async def test_moving_across_columns_displaces_tasks_in_both(live: LiveServer) -> None:
    token = live.token("ada@example.test")
    p = (await live.gql(token, PROJECT, n="Board"))["createProject"]["id"]
    a, b, c = await tasks_in(live, token, p, "TODO", *"ABC")
    x, y = await tasks_in(live, token, p, "IN_PROGRESS", "X", "Y")
    async with ws(live, token) as client:
        follower = await Follower(live, token, p, client).start()
        await live.gql(token, MOVE, id=b, s="IN_PROGRESS", at=1)
        across = await follower.next()
        await follower.matches()
        await live.gql(token, MOVE, id=a, s="IN_REVIEW", at=99)  # past the end: appended
        past = await follower.next()
        await follower.matches()
    assert across["changes"] == [{"field": "status", "from": "TODO", "to": "IN_PROGRESS"}]
    assert across["displaced"] == [
        {"id": c, "status": "TODO", "position": 1},
        {"id": y, "status": "IN_PROGRESS", "position": 2},
    ]
    assert past["changes"] == [{"field": "status", "from": "TODO", "to": "IN_REVIEW"}]
    assert past["displaced"] == [{"id": c, "status": "TODO", "position": 0}]
    assert columns(follower.board) == {"TODO": [c], "IN_PROGRESS": [x, b, y], "IN_REVIEW": [a]}


async def test_completing_closes_the_gap_and_says_where_the_task_went(live: LiveServer) -> None:
    token = live.token("ada@example.test")
    p = (await live.gql(token, PROJECT, n="Board"))["createProject"]["id"]
    a, b, c = await tasks_in(live, token, p, "TODO", *"ABC")
    [done] = await tasks_in(live, token, p, "DONE", "Done already")
    await live.gql(token, UPDATE, id=a, i={"progress": 30})
    async with ws(live, token) as client:
        follower = await Follower(live, token, p, client).start()
        await live.gql(token, COMPLETE, id=a)
        completed = await follower.next()
        await follower.matches()
    assert completed["type"] == "COMPLETED"
    assert completed["changes"] == [
        {"field": "status", "from": "TODO", "to": "DONE"},
        {"field": "position", "from": "0", "to": "1"},
        {"field": "progress", "from": "30", "to": "100"},
    ]
    assert completed["displaced"] == [
        {"id": b, "status": "TODO", "position": 0},
        {"id": c, "status": "TODO", "position": 1},
    ]
    assert columns(follower.board) == {"TODO": [b, c], "DONE": [done, a]}


async def test_deleting_closes_the_gap(live: LiveServer) -> None:
    token = live.token("ada@example.test")
    p = (await live.gql(token, PROJECT, n="Board"))["createProject"]["id"]
    a, b, c, d = await tasks_in(live, token, p, "TODO", *"ABCD")
    async with ws(live, token) as client:
        follower = await Follower(live, token, p, client).start()
        await live.gql(token, DELETE, id=b)
        deleted = await follower.next()
        await follower.matches()
        await live.gql(token, DELETE, id=d)  # the last one: nothing below it
        last = await follower.next()
        await follower.matches()
    assert (deleted["type"], deleted["task"]["id"], deleted["changes"]) == ("DELETED", b, [])
    assert deleted["displaced"] == [
        {"id": c, "status": "TODO", "position": 1},
        {"id": d, "status": "TODO", "position": 2},
    ]
    assert (last["task"]["id"], last["displaced"]) == (d, [])
    assert columns(follower.board) == {"TODO": [a, c]}


async def test_creating_appends_and_displaces_nothing(live: LiveServer) -> None:
    token = live.token("ada@example.test")
    p = (await live.gql(token, PROJECT, n="Board"))["createProject"]["id"]
    await tasks_in(live, token, p, "TODO", "A", "B")
    async with ws(live, token) as client:
        follower = await Follower(live, token, p, client).start()
        await live.gql(token, CREATE, p=p, t="C")
        created = await follower.next()
        await follower.matches()
    assert (created["type"], created["task"]["position"], created["displaced"]) == ("CREATED", 2, [])


async def test_moving_out_of_done_reopens_with_progress_zero(live: LiveServer) -> None:
    token = live.token("ada@example.test")
    p = (await live.gql(token, PROJECT, n="Board"))["createProject"]["id"]
    a, b = await tasks_in(live, token, p, "DONE", "A", "B")
    [x] = await tasks_in(live, token, p, "IN_PROGRESS", "X")
    async with ws(live, token) as client:
        follower = await Follower(live, token, p, client).start()
        await live.gql(token, MOVE, id=b, s="DONE", at=0)  # within DONE: still done
        within = await follower.next()
        await follower.matches()
        reopened = (await live.gql(token, MOVE, id=b, s="IN_PROGRESS", at=0))["moveTask"]
        back = await follower.next()
        await follower.matches()
    assert within["changes"] == [{"field": "position", "from": "1", "to": "0"}]
    assert within["task"]["progress"] == 100 and within["task"]["completedAt"] is not None
    assert (reopened["status"], reopened["progress"], reopened["completedAt"]) == ("IN_PROGRESS", 0, None)
    assert back["changes"] == [
        {"field": "status", "from": "DONE", "to": "IN_PROGRESS"},
        {"field": "progress", "from": "100", "to": "0"},
    ]
    assert (back["task"]["progress"], back["task"]["completedAt"]) == (0, None)
    assert back["displaced"] == [  # in board order
        {"id": x, "status": "IN_PROGRESS", "position": 1},
        {"id": a, "status": "DONE", "position": 0},
    ]


async def test_moving_into_done_completes_with_progress_a_hundred(live: LiveServer) -> None:
    token = live.token("ada@example.test")
    p = (await live.gql(token, PROJECT, n="Board"))["createProject"]["id"]
    [a] = await tasks_in(live, token, p, "IN_PROGRESS", "A")
    await live.gql(token, UPDATE, id=a, i={"progress": 40})
    async with ws(live, token) as client:
        follower = await Follower(live, token, p, client).start()
        done = (await live.gql(token, MOVE, id=a, s="DONE", at=0))["moveTask"]
        moved = await follower.next()
        await follower.matches()
    assert (done["status"], done["progress"]) == ("DONE", 100) and done["completedAt"] is not None
    assert moved["changes"] == [
        {"field": "status", "from": "IN_PROGRESS", "to": "DONE"},
        {"field": "progress", "from": "40", "to": "100"},
    ]


async def test_commented_events_carry_the_comment_with_its_author(live: LiveServer) -> None:
    ada, bob = live.token("ada@example.test"), live.token("bob@example.test")
    p = (await live.gql(ada, PROJECT, n="Board"))["createProject"]["id"]
    bob_id = await user_id(live, bob)
    await live.gql(live.token("admin@example.test", Role.ADMIN), ADD_MEMBER, p=p, u=bob_id)
    [task] = await tasks_in(live, ada, p, "TODO", "Ship")
    async with ws(live, ada) as client:
        await subscribed(client, p)
        comment = (await live.gql(bob, COMMENT, id=task, b="  Shipped on Friday  "))["addTaskComment"]
        await live.gql(ada, UPDATE, id=task, i={"title": "Shipped"})
        commented = (await client.next("1"))["taskEvents"]
        updated = (await client.next("1"))["taskEvents"]
    assert commented["type"] == "COMMENTED"
    assert commented["comment"] == {
        "id": comment["id"],
        "body": "Shipped on Friday",
        "author": {"id": bob_id, "name": "bob"},
    }
    assert (commented["task"]["id"], commented["changes"], commented["displaced"]) == (task, [], [])
    assert updated["comment"] is None


async def test_events_logged_without_displaced_resolve_to_none_displaced(live: LiveServer) -> None:
    """The log keeps events from before boards carried their shifts: replayed, they show none."""
    token = live.token("ada@example.test")
    p = (await live.gql(token, PROJECT, n="Board"))["createProject"]["id"]
    a, b = await tasks_in(live, token, p, "TODO", "A", "B")
    await live.gql(token, DELETE, id=a)
    row = await Event.get(topic=f"project:{p}", type="DELETED")
    assert row.payload["displaced"] == [{"id": int(b), "status": 1, "position": 0}]  # compact
    await Event.filter(id=row.id).update(payload={k: v for k, v in row.payload.items() if k != "displaced"})
    async with ws(live, token) as client:
        await subscribed(client, p, after=cursor(f"project:{p}", 2))
        old = (await client.next("1"))["taskEvents"]
    assert (old["type"], old["task"]["id"], old["displaced"]) == ("DELETED", a, [])


async def test_removing_a_member_unassigns_their_tasks_with_an_event_each(live: LiveServer) -> None:
    ada, bob, cy = (live.token(f"{n}@example.test") for n in ("ada", "bob", "cy"))
    p = (await live.gql(ada, PROJECT, n="Board"))["createProject"]["id"]
    other = (await live.gql(ada, PROJECT, n="Other"))["createProject"]["id"]
    bob_id, cy_id = await user_id(live, bob), await user_id(live, cy)
    admin = live.token("admin@example.test", Role.ADMIN)
    for project in (p, other):
        for member in (bob_id, cy_id):
            await live.gql(admin, ADD_MEMBER, p=project, u=member)
    first, second, kept = await tasks_in(live, ada, p, "TODO", "First", "Second", "Cy's")
    [elsewhere] = await tasks_in(live, ada, other, "TODO", "Elsewhere")
    for task, assignee in ((first, bob_id), (second, bob_id), (kept, cy_id), (elsewhere, bob_id)):
        await live.gql(ada, ASSIGN, id=task, a=assignee)
    await live.gql(ada, MOVE, id=second, s="IN_REVIEW", at=0)
    async with ws(live, ada) as watching, ws(live, bob) as leaving:
        follower = await Follower(live, ada, p, watching).start()
        await subscribed(leaving, p)
        before = {t: follower.board[t] for t in (first, second)}
        await live.gql(ada, REMOVE_MEMBER, p=p, u=bob_id)
        unassigned = [await follower.next() for _ in range(2)]
        await follower.matches()
        # The one who left sees their tasks unassigned too, then their stream ends.
        theirs = [(await leaving.next("1"))["taskEvents"] for _ in range(2)]
        ended = await leaving.receive()
        assert ended["type"] == "next" and ended["payload"]["errors"][0]["extensions"]["code"] == "NOT_FOUND"
        assert await leaving.receive() == {"id": "1", "type": "complete"}
        await live.gql(ada, UPDATE, id=kept, i={"title": "Still Cy's"})
        after = await follower.next()  # nothing else came between: MEMBER_REMOVED is no task event
        await follower.matches()
    assert [(e["type"], e["task"]["id"]) for e in unassigned] == [("ASSIGNED", first), ("ASSIGNED", second)]
    for event in unassigned:
        assert event["changes"] == [{"field": "assigneeId", "from": bob_id, "to": None}]
        assert event["task"]["assignee"] is None and event["displaced"] == []
        assert {k: v for k, v in card(event["task"]).items() if k != "assignee"} == {
            k: v for k, v in before[event["task"]["id"]].items() if k != "assignee"
        }
    versions = {e["task"]["id"]: e["task"]["version"] for e in unassigned}
    assert versions == {first: 3, second: 4}  # created, assigned (and moved), then unassigned
    assert [e["cursor"] for e in theirs] == [e["cursor"] for e in unassigned]
    assert (after["task"]["id"], after["task"]["assignee"]) == (kept, {"id": cy_id})
    assert follower.board[kept]["assignee"] == cy_id
    # Their tasks in another project stay theirs.
    task = "query($id: ID!) { task(id: $id) { assignee { id } } }"
    assert (await live.gql(ada, task, id=elsewhere))["task"]["assignee"] == {"id": bob_id}


async def test_a_member_without_tasks_leaves_with_no_task_event(live: LiveServer) -> None:
    ada, bob = live.token("ada@example.test"), live.token("bob@example.test")
    p = (await live.gql(ada, PROJECT, n="Board"))["createProject"]["id"]
    bob_id = await user_id(live, bob)
    await live.gql(live.token("admin@example.test", Role.ADMIN), ADD_MEMBER, p=p, u=bob_id)
    await tasks_in(live, ada, p, "TODO", "Not Bob's")
    await live.gql(bob, REMOVE_MEMBER, p=p, u=bob_id)
    rows = await Event.filter(topic=f"project:{p}").order_by("seq")
    assert [e.type for e in rows] == ["CREATED", "MEMBER_REMOVED"]


@pytest.mark.skipif(not ON_POSTGRES, reason="needs concurrent writers (PostgreSQL)")
async def test_changing_a_task_deleted_meanwhile_is_not_found(live: LiveServer) -> None:
    """Writers of one board wait for its lock: one that waited while the task was deleted finds
    it gone, NOT_FOUND (as for any task that is not there), and shifts nothing."""
    token = live.token("ada@example.test")
    p = (await live.gql(token, PROJECT, n="Board"))["createProject"]["id"]
    ids = await tasks_in(live, token, p, "TODO", *(f"T{i}" for i in range(8)))

    async def outcome(query: str, **variables: Any) -> str | None:
        async with http_client(timeout=TIMEOUT) as http:
            response = await http.post(
                live.url + "/graphql",
                json={"query": query, "variables": variables},
                headers={"authorization": f"Bearer {token}"},
            )
        errors = response.json().get("errors")
        return errors[0]["extensions"]["code"] if errors else None

    attempts = [
        attempt
        for task in ids
        for attempt in (
            outcome(MOVE, id=task, s="IN_REVIEW", at=0),
            outcome(DELETE, id=task),
            outcome(ASSIGN, id=task, a=None),
            outcome(COMPLETE, id=task),
        )
    ]
    results = await asyncio.gather(*attempts)
    assert set(results) <= {None, "NOT_FOUND"}, results
    assert results[1::4] == [None] * len(ids)  # every delete went through
    assert await server_board(live, token, p) == {}
