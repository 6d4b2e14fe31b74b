"""Per-request DataLoaders: one query per kind of related object, however many parents."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Sequence
from functools import cached_property
from typing import Any, TypeVar

from strawberry.dataloader import DataLoader
from tortoise.models import Model

from pulseboard.models import Project, ProjectMember, Queue, TaskComment, Team, TicketComment, User
from pulseboard.resolvers.access import worked_tickets
from pulseboard.resolvers.pagination import PageArgs, counts_by_parent, pages_by_parent

M = TypeVar("M", bound=Model)
K = TypeVar("K")
T = TypeVar("T")


class SharedLoader(DataLoader[K, T]):
    """A loader several subscribers wait on at once. Each waits on its own shield of the load, so
    one that is cancelled (it completed or disconnected mid-event) cannot cancel the load that
    the others wait for, which a bare shared future would; and a load that failed is tried
    again by the next caller rather than failing every retry."""

    def load(self, key: K) -> Awaitable[T]:
        # A failed load is not kept: the event is rendered again once the database is back.
        cached = self.cache_map.get(key) if self.cache else None
        if cached is not None and cached.done() and not cached.cancelled() and cached.exception() is not None:
            self.cache_map.delete(key)
        return asyncio.shield(super().load(key))


def loaded(loader: DataLoader[K, T], key: K) -> T | Awaitable[T]:
    """The value itself when `loader` holds it already, else the pending load. A resolver that
    returns a value lets graphql-core complete its row without an await: a page whose people
    were loaded first (schema load_people) completes without a task per row."""
    pending = loader.load(key)
    ready = isinstance(pending, asyncio.Future) and pending.done() and not pending.cancelled()
    if ready and pending.exception() is None:  # type: ignore[attr-defined]
        return pending.result()  # type: ignore[attr-defined,no-any-return]
    return pending


def _by_id(model: type[M], kind: type[DataLoader[Any, Any]]) -> DataLoader[int, M | None]:
    async def load(ids: Sequence[int]) -> list[M | None]:
        rows = {row.pk: row for row in await model.filter(id__in=list(ids))}
        return [rows.get(i) for i in ids]

    return kind(load_fn=load)


async def _project_members(project_ids: Sequence[int]) -> list[list[User]]:
    members: dict[int, list[User]] = {pid: [] for pid in project_ids}
    rows = await ProjectMember.filter(project_id__in=list(project_ids)).order_by("user_id")
    users = {u.id: u for u in await User.filter(id__in={r.user_id for r in rows})}
    for row in rows:
        members[row.project_id].append(users[row.user_id])
    return [members[pid] for pid in project_ids]


async def _project_memberships(project_ids: Sequence[int]) -> list[list[ProjectMember]]:
    rows: dict[int, list[ProjectMember]] = {pid: [] for pid in project_ids}
    for row in await ProjectMember.filter(project_id__in=list(project_ids)).order_by("user_id"):
        rows[row.project_id].append(row)
    return [rows[pid] for pid in project_ids]


async def _worked(keys: Sequence[tuple[int, int]]) -> list[bool]:
    by_user: dict[int, set[int]] = defaultdict(set)
    for user_id, ticket_id in keys:
        by_user[user_id].add(ticket_id)
    worked = {(u, t) for u, ids in by_user.items() for t in await worked_tickets(u, ids)}
    return [key in worked for key in keys]


# A parent's id and the page asked of its children.
PageKey = tuple[int, PageArgs]


# Children loaders are uncached: a later mutation of the same request may add a child, and its
# pages and counts must show it, as they did when each field ran its own query.
def _child_pages(
    model: type[M], parent: str, kind: type[DataLoader[Any, Any]]
) -> DataLoader[PageKey, list[M]]:
    async def load(keys: Sequence[PageKey]) -> list[list[M]]:
        parents: dict[PageArgs, set[int]] = defaultdict(set)
        for parent_id, args in keys:
            parents[args].add(parent_id)
        pages: dict[PageKey, list[M]] = {}
        for args, ids in parents.items():
            for parent_id, rows in (await pages_by_parent(model, parent, ids, args)).items():
                pages[parent_id, args] = rows
        return [pages[key] for key in keys]

    return kind(load_fn=load, cache=False)


def _child_counts(model: type[Model], parent: str, kind: type[DataLoader[Any, Any]]) -> DataLoader[int, int]:
    async def load(parent_ids: Sequence[int]) -> list[int]:
        counts = await counts_by_parent(model, parent, set(parent_ids))
        return [counts[parent_id] for parent_id in parent_ids]

    return kind(load_fn=load, cache=False)


class Loaders:
    """Created per request, and per subscription event (`shared` by that event's subscribers),
    so nothing goes stale."""

    def __init__(self, *, shared: bool = False) -> None:
        # Each loader is made on first use: most requests and sockets need one or two of them.
        self._kind: type[DataLoader[Any, Any]] = SharedLoader if shared else DataLoader

    @cached_property
    def user(self) -> DataLoader[int, User | None]:
        return _by_id(User, self._kind)

    @cached_property
    def project(self) -> DataLoader[int, Project | None]:
        return _by_id(Project, self._kind)

    @cached_property
    def queue(self) -> DataLoader[int, Queue | None]:
        return _by_id(Queue, self._kind)

    @cached_property
    def team(self) -> DataLoader[int, Team | None]:
        return _by_id(Team, self._kind)

    @cached_property
    def project_members(self) -> DataLoader[int, list[User]]:
        return self._kind(load_fn=_project_members)

    @cached_property
    def project_memberships(self) -> DataLoader[int, list[ProjectMember]]:
        """A project's membership rows (with their roles), in user id order."""
        return self._kind(load_fn=_project_memberships)

    @cached_property
    def worked(self) -> DataLoader[tuple[int, int], bool]:
        """Whether (agent id, ticket id) is a ticket of one of the agent's teams. Keyed by user, so
        one event's cohorts may share it; uncached, as team membership may change mid-request."""
        return self._kind(load_fn=_worked, cache=False)

    @cached_property
    def task_comments(self) -> DataLoader[PageKey, list[TaskComment]]:
        return _child_pages(TaskComment, "task_id", self._kind)

    @cached_property
    def task_comment_counts(self) -> DataLoader[int, int]:
        return _child_counts(TaskComment, "task_id", self._kind)

    @cached_property
    def ticket_comments(self) -> DataLoader[PageKey, list[TicketComment]]:
        return _child_pages(TicketComment, "ticket_id", self._kind)

    @cached_property
    def ticket_comment_counts(self) -> DataLoader[int, int]:
        return _child_counts(TicketComment, "ticket_id", self._kind)
