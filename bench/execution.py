"""What GraphQL execution alone costs on the board page, with no database and no HTTP.

    .venv/bin/python bench/execution.py            # 2000 executions of each, about 20 s
    .venv/bin/python bench/execution.py --runs 500

The page of bench/pages.py (`tasks(projectId, first: 50)` with totalCount, 6 fields a task and its
assignee's id and name), its rows built in memory, executed three ways in this one process:

- `pulseboard`: pulseboard's own schema through `Schema.execute`, as a request runs it (its
  extensions: the document cache, the limits, the operation log and metrics, the rate limit),
  with the page's resolver handing back rows made in memory and the assignees' loader reading a
  dict: what Strawberry and our schema cost on top of graphql-core;
- `graphql-core`: graphql-core 3 alone on the same SDL (`schema.graphql`), default resolvers
  over plain dicts, the document parsed and validated once: the floor of executing this shape in
  Python;
- each per execution, in microseconds of CPU (median of 5 rounds), and pulseboard's as a multiple.

Compare with bench/pages.py's server CPU per request: the difference is HTTP, the database and
Tortoise's rows.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from graphql import build_schema, execute, parse, validate  # noqa: E402
from strawberry.dataloader import DataLoader  # noqa: E402
from tortoise import Tortoise  # noqa: E402

from pulseboard.models import Role, Task, TaskPriority, TaskStatus, User  # noqa: E402
from pulseboard.resolvers import tasks as task_resolvers  # noqa: E402
from pulseboard.resolvers.context import Context  # noqa: E402
from pulseboard.resolvers.loaders import Loaders  # noqa: E402
from pulseboard.resolvers.pagination import Page, encode_cursor  # noqa: E402
from pulseboard.schema import build_schema as pulseboard_schema  # noqa: E402
from pulseboard.settings import Settings  # noqa: E402

PAGE = (
    "query($p: ID!) { tasks(projectId: $p, first: 50) { totalCount"
    " edges { node { id title status position priority assignee { id name } } } } }"
)
NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
STATUSES = list(TaskStatus)


def people() -> dict[int, User]:
    return {
        n: User._init_from_db(
            id=n, sub=f"m{n}", email=f"m{n}@example.test", name=f"Member {n}", role=Role.MEMBER.value
        )
        for n in range(1, 6)
    }


def rows() -> list[Task]:
    return [  # as Tortoise makes them of a page's rows
        Task._init_from_db(
            id=n,
            project_id=1,
            title=f"Task number {n}",
            description="",
            status=int(STATUSES[n % 4]),
            position=n // 4,
            priority=TaskPriority.MEDIUM.value,
            progress=0,
            version=1,
            assignee_id=n % 5 + 1,
            created_by_id=1,
            created_at=NOW,
            updated_at=NOW,
            due_at=None,
            completed_at=None,
        )
        for n in range(1, 51)
    ]


def measure(run: Callable[[], Awaitable[Any]], runs: int) -> float:
    """Median over 5 rounds of the CPU microseconds one run takes."""

    async def rounds() -> list[float]:
        for _ in range(50):
            await run()
        taken = []
        for _ in range(5):
            started = time.process_time()
            for _ in range(runs):
                await run()
            taken.append((time.process_time() - started) / runs * 1e6)
        return taken

    return statistics.median(asyncio.run(rounds()))


def through_pulseboard(runs: int) -> float:
    settings = Settings(jwt_secret="x" * 40, mutations_per_second=1e9, mutation_burst=1e9)
    schema = pulseboard_schema(settings)
    page_rows, users = rows(), people()
    viewer = users[1]

    async def page(ctx: Context, **_: Any) -> Page[Task]:  # the page's query, from memory
        async def count() -> int:
            return 60

        cursors = [encode_cursor([int(r.status), r.position, r.id]) for r in page_rows]
        return Page(
            items=page_rows, cursors=cursors, has_next_page=True, has_previous_page=False, count=count
        )

    async def load_users(ids: list[int]) -> list[User | None]:
        return [users.get(i) for i in ids]

    task_resolvers.tasks = page  # type: ignore[assignment]

    async def run() -> None:
        loaders = Loaders()
        loaders.__dict__["user"] = DataLoader(load_fn=load_users)
        context = Context(settings=settings, viewer=viewer, loaders=loaders)
        result = await schema.execute(PAGE, variable_values={"p": "1"}, context_value=context)
        assert not result.errors, result.errors

    return measure(run, runs)


def through_graphql_core(runs: int) -> float:
    schema = build_schema((ROOT / "schema.graphql").read_text())
    document = parse(PAGE)
    assert not validate(schema, document)
    users = people()
    nodes = [
        {
            "id": str(r.id),
            "title": r.title,
            "status": r.status.name,
            "position": r.position,
            "priority": r.priority.name,
            "assignee": {"id": str(r.assignee_id), "name": users[r.assignee_id].name},
        }
        for r in rows()
    ]
    root = {"tasks": {"totalCount": 60, "edges": [{"node": node} for node in nodes]}}

    async def run() -> None:
        result = execute(schema, document, root_value=root, variable_values={"p": "1"})
        assert not result.errors, result.errors  # type: ignore[union-attr]

    return measure(run, runs)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=2000, help="executions per round (5 rounds)")
    args = parser.parse_args()
    # The models' metadata (fields, conversions) is set up by Tortoise.init; nothing is read.
    asyncio.run(Tortoise.init(db_url="sqlite://:memory:", modules={"models": ["pulseboard.models"]}))
    core = through_graphql_core(args.runs)
    ours = through_pulseboard(args.runs)
    print("| execution of the board page (50 tasks), from memory | CPU µs / execution | x graphql-core |")
    print("|---|---|---|")
    print(f"| graphql-core alone, default resolvers over dicts | {core:,.0f} | 1 |")
    print(f"| pulseboard's schema (Strawberry, extensions, loaders) | {ours:,.0f} | {ours / core:.1f} |")


if __name__ == "__main__":
    main()
