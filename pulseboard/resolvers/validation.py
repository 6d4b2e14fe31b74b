"""Input checks shared by the domains; each failure names the field (BAD_USER_INPUT)."""

from __future__ import annotations

import datetime as dt
import re
import unicodedata

from pulseboard.errors import bad_input

TITLE_MAX = 200
BODY_MAX = 10_000
SEARCH_MAX = 100

# A lone surrogate (JSON can escape one, UTF-8 cannot encode it) fails at the database.
_SURROGATE = re.compile("[\ud800-\udfff]")
# Control characters (category Cc) but tab, newline and carriage return: PostgreSQL cannot store
# NUL, and the rest are terminal escapes or garbage.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# Titles and names show on one line; free text keeps these for its layout.
_LAYOUT = re.compile("[\t\n\r\u2028\u2029]")
# Characters that draw nothing though they are neither whitespace nor format characters (Cf):
# combining grapheme joiner, Hangul fillers, Khmer inherent vowels, Mongolian free variation
# selectors, variation selectors, and the blank braille pattern.
_INVISIBLE = frozenset(
    "\u034f\u115f\u1160\u17b4\u17b5\u180b\u180c\u180d\u180f\u2800\u3164\uffa0"
    + "".join(map(chr, range(0xFE00, 0xFE10)))
    + "".join(map(chr, range(0xE0100, 0xE01F0)))
)


def unstorable(value: str, *, multiline: bool = False) -> str | None:
    """Why `value` cannot be kept as text, phrased to follow a field's name; None if it can.
    Also used for token claims, which become users' columns."""
    if _SURROGATE.search(value):
        return "must be valid Unicode (it has a lone surrogate)"
    if _CONTROL.search(value):
        return "must not contain control characters"
    if not multiline and _LAYOUT.search(value):
        return "must be a single line (no tabs or line breaks)"
    return None


def blank(value: str) -> bool:
    """True when nothing in `value` would show: whitespace, format characters (zero-width
    spaces and joiners, BOMs, direction marks) and other characters that draw nothing."""
    return all(c.isspace() or c in _INVISIBLE or unicodedata.category(c) == "Cf" for c in value)


def text(
    field: str, value: str, *, max_length: int = TITLE_MAX, required: bool = True, multiline: bool = False
) -> str:
    """`value` trimmed, or BAD_USER_INPUT naming `field` (the message never repeats the value).
    `multiline` is for free text such as descriptions and comments; titles and names are one line.
    Optional text that shows nothing is stored empty."""
    value = value.strip()
    if len(value) > max_length:
        raise bad_input(field, f"{field} must be at most {max_length} characters.")
    if problem := unstorable(value, multiline=multiline):
        raise bad_input(field, f"{field} {problem}.")
    if blank(value):
        if required:
            raise bad_input(field, f"{field} must not be empty.")
        return ""
    return value


def searched(value: str | None) -> str | None:
    """A list's `search` argument trimmed; None when it shows nothing (a cleared search box
    searches for nothing, so it filters nothing)."""
    if value is None:
        return None
    value = text("search", value, max_length=SEARCH_MAX, required=False)
    return value or None


def in_utc(field: str, value: dt.datetime | None) -> dt.datetime | None:
    """`value` in UTC; one without an offset is taken to be in UTC already."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    try:
        return value.astimezone(dt.UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+14:00 is in the year 0 in UTC
        raise bad_input(field, f"{field} must fall between years 1 and 9999 in UTC.") from None


def int_range(field: str, value: int, low: int, high: int) -> int:
    if not low <= value <= high:
        raise bad_input(field, f"{field} must be between {low} and {high}.")
    return value


def check_version(field_value: int, expected: int | None) -> bool:
    """True when no expectation was given or it matches."""
    return expected is None or expected == field_value
