"""Keyset pagination behind Relay-style connections: stable under inserts and deletes."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from tortoise.expressions import Q
from tortoise.models import Model
from tortoise.queryset import QuerySet

from pulseboard.errors import bad_input
from pulseboard.settings import Settings

M = TypeVar("M", bound=Model)
# Every sort key is a 32-bit integer column; anything outside cannot be a position of ours.
INT_MIN, INT_MAX = -(2**31), 2**31 - 1


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


def decode_cursor(cursor: str, arity: int) -> list[int]:
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, binascii.Error, UnicodeError):
        raise bad_input("after", "Invalid cursor.") from None
    if not isinstance(key, list) or len(key) != arity or not all(_in_range(v) for v in key):
        raise bad_input("after", "Invalid cursor.")
    return key


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


def page_size(settings: Settings, first: int | None) -> int:
    if first is None:
        return settings.page_size_default
    if first < 0 or first > settings.page_size_max:
        raise bad_input("first", f"first must be between 0 and {settings.page_size_max}.")
    return first


async def paginate(
    query: QuerySet[M],
    *,
    order: Sequence[str],
    first: int | None,
    after: str | None,
    settings: Settings,
) -> Page[M]:
    """One page of `query` in `order` (integer columns only, the last one unique)."""
    limit = page_size(settings, first)
    rows_query = query
    if after is not None:
        rows_query = rows_query.filter(_after(order, decode_cursor(after, len(order))))
    # One row more than asked tells whether another page follows (also for first: 0).
    rows = await rows_query.order_by(*order).limit(limit + 1)
    items = list(rows[:limit])
    return Page(
        items=items,
        cursors=[encode_cursor(_key(row, order)) for row in items],
        has_next_page=len(rows) > limit,
        has_previous_page=after is not None,
        count=query.count,
    )
