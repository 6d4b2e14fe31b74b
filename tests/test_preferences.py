"""The viewer's notification preferences: defaults, partial updates, quiet hours and their checks."""

from __future__ import annotations

import pytest

from pulseboard.models import NotificationType
from tests.helpers import Api

FIELDS = "enabled sound types { type inApp browser email } quietHours { start end timezone }"
PREFERENCES = f"{{ preferences {{ {FIELDS} }} }}"
UPDATE = f"mutation($input: UpdatePreferencesInput!) {{ updatePreferences(input: $input) {{ {FIELDS} }} }}"
ALL_TYPES = [t.value for t in NotificationType]


def channels(prefs: dict) -> dict[str, tuple[bool, bool, bool]]:
    return {t["type"]: (t["inApp"], t["browser"], t["email"]) for t in prefs["types"]}


async def update(api: Api, who: object, **input: object) -> dict:
    return (await api.ok(who, UPDATE, input=input))["updatePreferences"]  # type: ignore[arg-type]


async def stored(api: Api, who: object) -> dict:
    return (await api.ok(who, PREFERENCES))["preferences"]  # type: ignore[arg-type]


async def test_defaults(api: Api) -> None:
    member = await api.person()
    prefs = await stored(api, member)
    assert prefs["enabled"] is True
    assert prefs["sound"] is True
    assert prefs["quietHours"] is None
    assert [t["type"] for t in prefs["types"]] == ALL_TYPES
    assert set(channels(prefs).values()) == {(True, True, True)}


async def test_partial_update_keeps_what_was_not_sent(api: Api) -> None:
    member = await api.person()
    await update(api, member, sound=False)
    await update(api, member, quietHours={"start": "22:00", "end": "07:00", "timezone": "Europe/Berlin"})
    await update(api, member, types=[{"type": "TASK_COMMENTED", "email": False}])
    prefs = await update(api, member, enabled=False)
    assert (prefs["enabled"], prefs["sound"]) == (False, False)
    assert prefs["quietHours"] == {"start": "22:00", "end": "07:00", "timezone": "Europe/Berlin"}
    assert channels(prefs)["TASK_COMMENTED"] == (True, True, False)
    assert await stored(api, member) == prefs
    # An empty update changes nothing.
    assert await update(api, member) == prefs


async def test_type_and_channel_toggles(api: Api) -> None:
    member = await api.person()
    prefs = await update(
        api,
        member,
        types=[
            {"type": "TASK_ASSIGNED", "inApp": False},
            {"type": "TICKET_COMMENTED", "browser": False, "email": False},
        ],
    )
    on = channels(prefs)
    assert on["TASK_ASSIGNED"] == (False, True, True)
    assert on["TICKET_COMMENTED"] == (True, False, False)
    assert all(
        on[t] == (True, True, True) for t in ALL_TYPES if t not in ("TASK_ASSIGNED", "TICKET_COMMENTED")
    )
    # A later toggle of one channel keeps the type's other channels as they were.
    prefs = await update(api, member, types=[{"type": "TICKET_COMMENTED", "email": True}])
    assert channels(prefs)["TICKET_COMMENTED"] == (True, False, True)
    assert channels(prefs)["TASK_ASSIGNED"] == (False, True, True)
    assert channels(await stored(api, member)) == channels(prefs)


async def test_quiet_hours_set_and_cleared(api: Api) -> None:
    member = await api.person()
    quiet = {"start": "23:30", "end": "06:45", "timezone": "America/New_York"}
    assert (await update(api, member, quietHours=quiet))["quietHours"] == quiet
    assert (await stored(api, member))["quietHours"] == quiet
    changed = {"start": "00:00", "end": "23:59", "timezone": "UTC"}
    assert (await update(api, member, quietHours=changed))["quietHours"] == changed
    assert (await update(api, member, quietHours=None))["quietHours"] is None
    assert (await stored(api, member))["quietHours"] is None


@pytest.mark.parametrize(
    ("sent", "canonical"), [("europe/paris", "Europe/Paris"), ("utc", "UTC"), ("ASIA/TOKYO", "Asia/Tokyo")]
)
async def test_time_zones_are_matched_ignoring_case_and_stored_as_iana_spells_them(
    api: Api, sent: str, canonical: str
) -> None:
    member = await api.person()
    prefs = await update(api, member, quietHours={"start": "22:00", "end": "07:00", "timezone": sent})
    assert prefs["quietHours"]["timezone"] == canonical
    assert (await stored(api, member))["quietHours"]["timezone"] == canonical


async def test_quiet_hours_that_start_when_they_end_are_none(api: Api) -> None:
    member = await api.person()
    await update(api, member, quietHours={"start": "22:00", "end": "07:00", "timezone": "UTC"})
    # start == end would be quiet never (or always): it is stored as no quiet hours at all.
    prefs = await update(api, member, quietHours={"start": "08:00", "end": "08:00", "timezone": "UTC"})
    assert prefs["quietHours"] is None
    assert (await stored(api, member))["quietHours"] is None


@pytest.mark.parametrize("bad", ["25:00", "7pm", "7:00", "22:00\n"])
@pytest.mark.parametrize("end", [False, True], ids=["start", "end"])
async def test_bad_quiet_hours_time(api: Api, bad: str, end: bool) -> None:
    member = await api.person()
    quiet = {"start": "22:00", "end": "07:00", "timezone": "UTC"}
    field = "end" if end else "start"
    quiet[field] = bad
    error = await api.error(member, UPDATE, input={"quietHours": quiet})
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": f"quietHours.{field}"}
    assert (await stored(api, member))["quietHours"] is None


@pytest.mark.parametrize(
    "timezone",
    [
        "Mars/Olympus_Mons",
        "Europe/Berlin/",
        "../etc/passwd",
        "",
        "America",
        "zone.tab",
        "x" * 300,
        "localtime",
    ],
)
async def test_bad_timezone_stores_nothing(api: Api, timezone: str) -> None:
    member = await api.person()
    before = await stored(api, member)
    error = await api.error(
        member,
        UPDATE,
        input={
            "enabled": False,
            "types": [{"type": "TASK_ASSIGNED", "inApp": False}],
            "quietHours": {"start": "22:00", "end": "07:00", "timezone": timezone},
        },
    )
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "quietHours.timezone"}
    assert await stored(api, member) == before


async def test_null_master_switch_is_refused(api: Api) -> None:
    member = await api.person()
    for name in ("enabled", "sound"):
        error = await api.error(member, UPDATE, input={name: None})
        assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": name}
    prefs = await stored(api, member)
    assert (prefs["enabled"], prefs["sound"]) == (True, True)


async def test_preferences_are_per_viewer(api: Api) -> None:
    alice, bob = await api.person(), await api.person()
    defaults = await stored(api, bob)
    await update(
        api,
        alice,
        enabled=False,
        sound=False,
        types=[{"type": "TICKET_ASSIGNED", "inApp": False}],
        quietHours={"start": "20:00", "end": "08:00", "timezone": "Asia/Tokyo"},
    )
    assert await stored(api, bob) == defaults
    await update(api, bob, sound=False)
    assert (await stored(api, alice))["quietHours"]["timezone"] == "Asia/Tokyo"
    assert (await stored(api, alice))["enabled"] is False
