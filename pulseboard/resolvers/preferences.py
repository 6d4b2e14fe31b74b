"""The viewer's notification preferences: master switch, sound, type x channel, quiet hours."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pulseboard.errors import bad_input
from pulseboard.models import NotificationChannel, NotificationPreferences, NotificationType
from pulseboard.resolvers.context import Context

_CLOCK = re.compile(r"([01]\d|2[0-3]):[0-5]\d")
TIMEZONE_MAX = 64  # the column's width; every IANA name is far shorter


@dataclass(frozen=True)
class QuietHours:
    start: str
    end: str
    timezone: str


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


def _check_quiet_hours(value: QuietHours) -> None:
    for name in ("start", "end"):
        if not _CLOCK.fullmatch(getattr(value, name)):
            raise bad_input(f"quietHours.{name}", f"quietHours.{name} must be a time like 22:00.")
    try:
        if len(value.timezone) > TIMEZONE_MAX:
            raise ValueError(value.timezone)
        ZoneInfo(value.timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a directory such as "America"
        raise bad_input("quietHours.timezone", f"Unknown time zone {value.timezone!r}.") from None


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
        quiet = values["quietHours"]
        if quiet is not None:
            _check_quiet_hours(quiet)
        prefs.quiet_start = quiet.start if quiet else None
        prefs.quiet_end = quiet.end if quiet else None
        prefs.quiet_timezone = quiet.timezone if quiet else None
    channels = {k: dict(v) for k, v in prefs.channels.items()}
    for type, settings in types:
        entry = channels.setdefault(type.value, {})
        entry.update({channel.value: on for channel, on in settings.items()})
    prefs.channels = channels
    await prefs.save()
    return prefs
