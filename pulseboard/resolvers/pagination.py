"""Keyset pagination behind Relay-style connections: stable under inserts and deletes. Nested
connections (a list's children) page all their parents in one statement, and count them in one.

Forward (`first`, `after`) reads the order from the cursor on; backward (`last`, `before`) reads
the reversed order from the cursor on, and the page is turned back into the forward order: the
same index serves both directions, and no OFFSET is ever needed."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, Literal, TypeVar

from pypika_tortoise import Order, Table
from pypika_tortoise.analytics import RowNumber
from pypika_tortoise.queries import QueryBuilder
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.expressions import Q, RawSQL
from tortoise.functions import Count
from tortoise.models import Model
from tortoise.queryset import QuerySet, ValuesListQuery
from tortoise.router import router

from pulseboard.errors import bad_input
from pulseboard.settings import Settings

M = TypeVar("M", bound=Model)
# Every sort key is a 32-bit integer column; anything outside cannot be a position of ours.
INT_MIN, INT_MAX = -(2**31), 2**31 - 1
RANK = "row_rank"
TOTAL = "window_total"


@dataclass
class Page(Generic[M]):
    items: list[M]
    cursors: list[str]
    has_next_page: bool
    has_previous_page: bool
    count: Callable[[], Awaitable[int]]


def _key(row: Model, order: Sequence[str]) -> list[int]:
    return [int(getattr(row, name.lstrip("-"))) for name in order]


def encode_cursor(key: Sequence[int]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode()


def _in_range(value: object) -> bool:
    return type(value) is int and INT_MIN <= value <= INT_MAX


def decode_cursor(cursor: str, arity: int, field: str = "after") -> list[int]:
    """The key in a cursor; BAD_USER_INPUT naming `field` (after or before) for anything else."""
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, binascii.Error, UnicodeError):
        raise bad_input(field, "Invalid cursor.") from None
    if not isinstance(key, list) or len(key) != arity or not all(_in_range(v) for v in key):
        raise bad_input(field, "Invalid cursor.")
    return key


def reversed_order(order: Sequence[str]) -> list[str]:
    """`order` read from its end: every column's direction flipped."""
    return [name[1:] if name.startswith("-") else f"-{name}" for name in order]


def _after(order: Sequence[str], key: Sequence[int]) -> Q:
    """Rows strictly after `key` in `order`: (a > x) or (a = x and b > y) or ..."""
    clauses = []
    for i, name in enumerate(order):
        column = name.lstrip("-")
        op = "lt" if name.startswith("-") else "gt"
        terms: dict[str, Any] = {prev.lstrip("-"): key[j] for j, prev in enumerate(order[:i])}
        terms[f"{column}__{op}"] = key[i]
        clauses.append(Q(**terms))
    return Q(*clauses, join_type=Q.OR)


def page_size(settings: Settings, size: int | None, field: str = "first") -> int:
    """`size` (the argument `field`: first or last) within the settings' limits."""
    if size is None:
        return settings.page_size_default
    if size < 0 or size > settings.page_size_max:
        raise bad_input(field, f"{field} must be between 0 and {settings.page_size_max}.")
    return size


@dataclass(frozen=True)
class PageArgs:
    """first or last, after and before, checked before anything is read; hashable, so batches
    group by them. `backward`: the page is the `limit` rows just before `before` (or the last
    ones), read from the cursor toward the start."""

    limit: int
    after: tuple[int, ...] | None
    before: tuple[int, ...] | None = None
    backward: bool = False


def page_args(
    settings: Settings,
    first: int | None,
    after: str | None,
    arity: int,
    *,
    last: int | None = None,
    before: str | None = None,
) -> PageArgs:
    """Relay's arguments: `first` pages forward, `last` backward (both at once is refused);
    `before` without either pages backward, by the default size, as `after` alone pages forward."""
    if first is not None and last is not None:
        raise bad_input("last", "Give first or last, not both: first pages forward, last backward.")
    backward = last is not None or (before is not None and first is None)
    return PageArgs(
        limit=page_size(settings, last, "last") if backward else page_size(settings, first),
        after=None if after is None else tuple(decode_cursor(after, arity)),
        before=None if before is None else tuple(decode_cursor(before, arity, "before")),
        backward=backward,
    )


def page_of(
    rows: Sequence[M], *, order: Sequence[str], args: PageArgs, count: Callable[[], Awaitable[int]]
) -> Page[M]:
    """The page from up to limit + 1 rows as read: in `order`, or backward in its reverse. One
    row more than asked tells whether another page follows (also for first: 0), or, backward,
    whether one precedes; the page itself is always in `order`."""
    items = list(rows[: args.limit])
    more = len(rows) > args.limit
    if args.backward:
        items.reverse()
    return Page(
        items=items,
        cursors=[encode_cursor(_key(row, order)) for row in items],
        has_next_page=args.before is not None if args.backward else more,
        has_previous_page=more if args.backward else args.after is not None,
        count=count,
    )


async def paginate(
    query: QuerySet[M],
    *,
    order: Sequence[str],
    first: int | None,
    after: str | None,
    settings: Settings,
    with_count: bool = False,
    last: int | None = None,
    before: str | None = None,
) -> Page[M]:
    """One page of `query` in `order` (integer columns only, the last one unique). With
    `with_count` (the client asked for totalCount), a page without a cursor (the first, or
    the last) is counted by the same statement (a window count); others, or a count asked for
    anyway, by a COUNT."""
    args = page_args(settings, first, after, len(order), last=last, before=before)
    read = reversed_order(order) if args.backward else order
    if with_count and args.after is None and args.before is None:
        counted_rows = query.annotate(**{TOTAL: RawSQL("COUNT(*) OVER ()")})
        rows = await counted_rows.order_by(*read).limit(args.limit + 1)
        total = int(getattr(rows[0], TOTAL)) if rows else 0
        return page_of(rows, order=order, args=args, count=partial(_known, total))
    rows_query = query
    if args.after is not None:
        rows_query = rows_query.filter(_after(order, args.after))
    if args.before is not None:  # strictly before in `order`: strictly after in its reverse
        rows_query = rows_query.filter(_after(reversed_order(order), args.before))
    rows = await rows_query.order_by(*read).limit(args.limit + 1)
    return page_of(rows, order=order, args=args, count=query.count)


async def _known(count: int) -> int:
    return count


def ranked_rows(
    db: BaseDBAsyncClient, model: type[Model], parent: str, parent_ids: Collection[int], args: PageArgs
) -> QueryBuilder:
    """The first limit + 1 rows of each parent between args.after and args.before, in id order
    (backward: the last ones, in descending id order, as page_of reads them). A LIMIT per parent
    would take one statement each; ROW_NUMBER over the (parent, id) index does all at once, on
    SQLite and PostgreSQL alike."""
    # Whole rows are ranked: ranking ids alone and joining back for the rest leaves PostgreSQL
    # unable to tell how few rows survive the rank, and it then scans the whole table.
    table = Table(model._meta.db_table)
    direction = Order.desc if args.backward else Order.asc
    rank = RowNumber().over(table.field(parent)).orderby(table.id, order=direction)
    ranked = (
        db.query_class.from_(table)
        .select(table.star, rank.as_(RANK))
        .where(table.field(parent).isin(sorted(parent_ids)))
    )
    if args.after is not None:
        ranked = ranked.where(table.id > args.after[0])
    if args.before is not None:
        ranked = ranked.where(table.id < args.before[0])
    ranked = ranked.as_("ranked")
    columns = model._meta.fields_db_projection.values()
    return (
        db.query_class.from_(ranked)
        .select(*(ranked.field(column) for column in columns))
        .where(ranked.field(RANK) <= args.limit + 1)
        .orderby(ranked.field(parent))
        .orderby(ranked.field("id"), order=direction)
    )


async def pages_by_parent(
    model: type[M], parent: str, parent_ids: Collection[int], args: PageArgs
) -> dict[int, list[M]]:
    """Each parent's page of `model` rows by id (up to limit + 1 of them, in the order page_of
    expects)."""
    db = router.db_for_read(model) or model._meta.db
    sql, values = ranked_rows(db, model, parent, parent_ids, args).get_parameterized_sql()
    rows: list[M] = await db.executor_class(model=model, db=db).execute_select(sql, values)
    pages: dict[int, list[M]] = {parent_id: [] for parent_id in parent_ids}
    for row in rows:
        pages[getattr(row, parent)].append(row)
    return pages


def counted(model: type[Model], parent: str, parent_ids: Collection[int]) -> ValuesListQuery[Literal[False]]:
    """(parent id, row count) of the parents that have rows: one grouped COUNT for all."""
    return (
        model.filter(**{f"{parent}__in": sorted(parent_ids)})
        .annotate(count=Count("id"))
        .group_by(parent)
        .values_list(parent, "count")
    )


async def counts_by_parent(model: type[Model], parent: str, parent_ids: Collection[int]) -> dict[int, int]:
    counts = {parent_id: 0 for parent_id in parent_ids}
    for parent_id, count in await counted(model, parent, parent_ids):
        counts[parent_id] = count
    return counts
