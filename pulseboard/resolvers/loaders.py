"""Per-request DataLoaders: one query per kind of related object, however many parents."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import TypeVar

from strawberry.dataloader import DataLoader
from tortoise.models import Model

from pulseboard.models import Project, ProjectMember, Queue, TaskComment, Team, TicketComment, User
from pulseboard.resolvers.pagination import PageArgs, counts_by_parent, pages_by_parent

M = TypeVar("M", bound=Model)


def _by_id(model: type[M]) -> DataLoader[int, M | None]:
    async def load(ids: Sequence[int]) -> list[M | None]:
        rows = {row.pk: row for row in await model.filter(id__in=list(ids))}
        return [rows.get(i) for i in ids]

    return DataLoader(load_fn=load)


async def _project_members(project_ids: Sequence[int]) -> list[list[User]]:
    members: dict[int, list[User]] = {pid: [] for pid in project_ids}
    rows = await ProjectMember.filter(project_id__in=list(project_ids)).order_by("user_id")
    users = {u.id: u for u in await User.filter(id__in={r.user_id for r in rows})}
    for row in rows:
        members[row.project_id].append(users[row.user_id])
    return [members[pid] for pid in project_ids]


# A parent's id and the page asked of its children.
PageKey = tuple[int, PageArgs]


# Children loaders are uncached: a later mutation of the same request may add a child, and its
# pages and counts must show it, as they did when each field ran its own query.
def _child_pages(model: type[M], parent: str) -> DataLoader[PageKey, list[M]]:
    async def load(keys: Sequence[PageKey]) -> list[list[M]]:
        parents: dict[PageArgs, set[int]] = defaultdict(set)
        for parent_id, args in keys:
            parents[args].add(parent_id)
        pages: dict[PageKey, list[M]] = {}
        for args, ids in parents.items():
            for parent_id, rows in (await pages_by_parent(model, parent, ids, args)).items():
                pages[parent_id, args] = rows
        return [pages[key] for key in keys]

    return DataLoader(load_fn=load, cache=False)


def _child_counts(model: type[Model], parent: str) -> DataLoader[int, int]:
    async def load(parent_ids: Sequence[int]) -> list[int]:
        counts = await counts_by_parent(model, parent, set(parent_ids))
        return [counts[parent_id] for parent_id in parent_ids]

    return DataLoader(load_fn=load, cache=False)


class Loaders:
    """Created per request (and per subscription event later) so nothing goes stale."""

    def __init__(self) -> None:
        self.user = _by_id(User)
        self.project = _by_id(Project)
        self.queue = _by_id(Queue)
        self.team = _by_id(Team)
        self.project_members: DataLoader[int, list[User]] = DataLoader(load_fn=_project_members)
        self.task_comments = _child_pages(TaskComment, "task_id")
        self.task_comment_counts = _child_counts(TaskComment, "task_id")
        self.ticket_comments = _child_pages(TicketComment, "ticket_id")
        self.ticket_comment_counts = _child_counts(TicketComment, "ticket_id")
