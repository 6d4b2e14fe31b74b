"""The viewer's notification preferences: master switch, sound, type x channel, quiet hours."""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from tortoise.transactions import in_transaction

from pulseboard.errors import bad_input
from pulseboard.models import NotificationChannel, NotificationPreferences, NotificationType
from pulseboard.resolvers import reminders
from pulseboard.resolvers.context import Context
from pulseboard.resolvers.validation import int_range

_CLOCK = re.compile(r"([01]\d|2[0-3]):[0-5]\d")
LEAD_MAX_MINUTES = 7 * 24 * 60  # a due-soon reminder at most a week ahead


@dataclass(frozen=True)
class QuietHours:
    """From `start` (included) to `end` (excluded), local times HH:MM in `timezone`; a start
    after the end spans midnight. start == end is no quiet hours: stored as none, and a period
    of no length that until() never finds `now` in."""

    start: str
    end: str
    timezone: str

    def until(self, now: dt.datetime) -> dt.datetime | None:
        """When the quiet period `now` (aware) falls in ends, or None outside quiet hours."""
        local = now.astimezone(ZoneInfo(self.timezone))
        clock = local.strftime("%H:%M")
        wraps = self.start > self.end
        inside = (clock >= self.start or clock < self.end) if wraps else self.start <= clock < self.end
        if not inside:
            return None
        hour, minute = map(int, self.end.split(":"))
        end = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
        if end <= local:  # tomorrow's end (the period spans midnight); wall-clock arithmetic
            end += dt.timedelta(days=1)
        return end.astimezone(dt.UTC)


@functools.cache
def _timezones() -> dict[str, str]:
    """IANA names by their lowercase spelling. Not `localtime`: that is the server's zone."""
    return {name.lower(): name for name in available_timezones() if name != "localtime"}


async def preferences(ctx: Context) -> NotificationPreferences:
    viewer = ctx.require_viewer()
    prefs, _ = await NotificationPreferences.get_or_create(user_id=viewer.id)
    return prefs


def channels_for(prefs: NotificationPreferences, type: NotificationType) -> dict[NotificationChannel, bool]:
    stored = prefs.channels.get(type.value, {})
    return {channel: stored.get(channel.value, True) for channel in NotificationChannel}


def quiet_hours(prefs: NotificationPreferences) -> QuietHours | None:
    if prefs.quiet_start and prefs.quiet_end and prefs.quiet_timezone:
        return QuietHours(prefs.quiet_start, prefs.quiet_end, prefs.quiet_timezone)
    return None


def _checked_quiet_hours(value: QuietHours) -> QuietHours | None:
    """`value` with its time zone spelled as IANA does ("europe/paris" is Europe/Paris); None
    when start == end, which silences nothing."""
    for name in ("start", "end"):
        if not _CLOCK.fullmatch(getattr(value, name)):
            raise bad_input(f"quietHours.{name}", f"quietHours.{name} must be a time like 22:00.")
    timezone = _timezones().get(value.timezone.lower())
    if timezone is None:
        raise bad_input("quietHours.timezone", f"Unknown time zone {value.timezone!r}.")
    return None if value.start == value.end else replace(value, timezone=timezone)


async def update_preferences(
    ctx: Context,
    *,
    values: Mapping[str, Any],
    types: Sequence[tuple[NotificationType, Mapping[NotificationChannel, bool]]] = (),
) -> NotificationPreferences:
    """`values` holds what the client sent: enabled, sound, quietHours (QuietHours or None)."""
    prefs = await preferences(ctx)
    for name in ("enabled", "sound"):
        if name in values:
            if values[name] is None:
                raise bad_input(name, f"{name} cannot be null.")
            setattr(prefs, name, values[name])
    if "quietHours" in values:
        quiet = values["quietHours"] and _checked_quiet_hours(values["quietHours"])
        prefs.quiet_start = quiet.start if quiet else None
        prefs.quiet_end = quiet.end if quiet else None
        prefs.quiet_timezone = quiet.timezone if quiet else None
    if "dueReminderMinutes" in values:
        prefs.due_reminder_minutes = _checked_lead(values["dueReminderMinutes"])
    channels = {k: dict(v) for k, v in prefs.channels.items()}
    for type, settings in types:
        entry = channels.setdefault(type.value, {})
        entry.update({channel.value: on for channel, on in settings.items()})
    prefs.channels = channels
    async with in_transaction() as conn:
        await prefs.save(using_db=conn)
        if "dueReminderMinutes" in values:  # pending due-soon reminders move with the lead time
            await reminders.rearm(conn, prefs.user_id, dt.timedelta(minutes=prefs.due_reminder_minutes))
    return prefs


def _checked_lead(minutes: int | None) -> int:
    if minutes is None:
        raise bad_input("dueReminderMinutes", "dueReminderMinutes cannot be null.")
    return int_range("dueReminderMinutes", minutes, 1, LEAD_MAX_MINUTES)
