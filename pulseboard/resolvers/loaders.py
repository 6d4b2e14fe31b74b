"""Per-request DataLoaders: one query per kind of related object, however many parents."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from strawberry.dataloader import DataLoader
from tortoise.models import Model

from pulseboard.models import Project, ProjectMember, Queue, Team, User

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


class Loaders:
    """Created per request (and per subscription event later) so nothing goes stale."""

    def __init__(self) -> None:
        self.user = _by_id(User)
        self.project = _by_id(Project)
        self.queue = _by_id(Queue)
        self.team = _by_id(Team)
        self.project_members: DataLoader[int, list[User]] = DataLoader(load_fn=_project_members)
