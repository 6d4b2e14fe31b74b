"""Input checks shared by the domains; each failure names the field (BAD_USER_INPUT)."""

from __future__ import annotations

from pulseboard.errors import bad_input

TITLE_MAX = 200
BODY_MAX = 10_000


def text(field: str, value: str, *, max_length: int = TITLE_MAX, required: bool = True) -> str:
    value = value.strip()
    if required and not value:
        raise bad_input(field, f"{field} must not be empty.")
    if len(value) > max_length:
        raise bad_input(field, f"{field} must be at most {max_length} characters.")
    return value


def int_range(field: str, value: int, low: int, high: int) -> int:
    if not low <= value <= high:
        raise bad_input(field, f"{field} must be between {low} and {high}.")
    return value


def check_version(field_value: int, expected: int | None) -> bool:
    """True when no expectation was given or it matches."""
    return expected is None or expected == field_value
