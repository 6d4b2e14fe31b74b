"""Per-request DataLoaders: one query per kind of related object, however many parents."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from strawberry.dataloader import DataLoader
from tortoise.models import Model

from pulseboard.models import Project, Queue, Team, User

M = TypeVar("M", bound=Model)


def _by_id(model: type[M]) -> DataLoader[int, M | None]:
    async def load(ids: Sequence[int]) -> list[M | None]:
        rows = {row.pk: row for row in await model.filter(id__in=list(ids))}
        return [rows.get(i) for i in ids]

    return DataLoader(load_fn=load)


class Loaders:
    """Created per request (and per subscription event later) so nothing goes stale."""

    def __init__(self) -> None:
        self.user = _by_id(User)
        self.project = _by_id(Project)
        self.queue = _by_id(Queue)
        self.team = _by_id(Team)
