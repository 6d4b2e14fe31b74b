"""Due-date reminders: TASK_DUE_SOON at the assignee's lead time, TASK_OVERDUE once when the due
date passes; re-armed or cancelled by changing the due date, the assignee or the column; sent
once each, also by two workers sweeping the same database."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from pulseboard.models import Role
from pulseboard.resolvers import reminders
from pulseboard.settings import Settings
from tests.conftest import BROADCAST_URL, ON_POSTGRES
from tests.helpers import Api, Person, code
from tests.live import worker_processes
from tests.test_notifications import UPDATE_PREFERENCES, kinds, shared_project

CREATE = """
mutation($p: ID!, $a: ID, $due: DateTime) {
  createTask(input: {projectId: $p, title: "Ship it", assigneeId: $a, dueAt: $due}) { id }
}"""
DUE = "mutation($id: ID!, $due: DateTime) { updateTask(id: $id, input: {dueAt: $due}) { id } }"
ASSIGN = "mutation($id: ID!, $a: ID) { assignTask(id: $id, assigneeId: $a) { id } }"
COMPLETE = "mutation($id: ID!) { completeTask(id: $id) { id } }"
ADD_MEMBER = "mutation($p: ID!, $u: ID!) { addProjectMember(projectId: $p, userId: $u) { id } }"
LEAD = "mutation($m: Int) { updatePreferences(input: {dueReminderMinutes: $m}) { dueReminderMinutes } }"
REMINDERS = {"TASK_DUE_SOON", "TASK_OVERDUE"}


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def reminded(api: Api, who: Person) -> list[str]:
    """The person's reminder notifications, oldest first."""
    return [kind for kind in reversed(await kinds(api, who)) if kind in REMINDERS]


async def board(api: Api) -> tuple[Person, Person, str]:
    """(owner, assignee, project): the owner assigns, the assignee is reminded."""
    owner, assignee = await api.person(), await api.person()
    return owner, assignee, await shared_project(api, owner, assignee)


async def task_due(api: Api, owner: Person, project: str, assignee: Person | None, due: dt.datetime) -> str:
    data = await api.ok(owner, CREATE, p=project, a=assignee.id if assignee else None, due=due.isoformat())
    return data["createTask"]["id"]


async def test_due_soon_then_overdue_each_once(api: Api) -> None:
    owner, assignee, project = await board(api)
    due = now() + dt.timedelta(minutes=90)
    await task_due(api, owner, project, assignee, due)
    assert await reminders.sweep() == 0  # 90 minutes ahead: the hour's lead has not begun
    assert await reminders.sweep(due - dt.timedelta(minutes=59)) == 1
    assert await reminded(api, assignee) == ["TASK_DUE_SOON"]
    assert await reminders.sweep(due - dt.timedelta(minutes=1)) == 0  # sent once
    assert await reminders.sweep(due + dt.timedelta(seconds=1)) == 1
    assert await reminders.sweep(due + dt.timedelta(days=3)) == 0
    assert await reminded(api, assignee) == ["TASK_DUE_SOON", "TASK_OVERDUE"]
    assert await reminded(api, owner) == []  # the assignee's reminders only


async def test_a_due_date_inside_the_lead_time_is_due_soon_at_once(api: Api) -> None:
    owner, assignee, project = await board(api)
    await task_due(api, owner, project, assignee, now() + dt.timedelta(minutes=10))
    assert await reminders.sweep() == 1
    assert await reminded(api, assignee) == ["TASK_DUE_SOON"]


async def test_a_late_sweep_sends_only_the_overdue_reminder(api: Api) -> None:
    owner, assignee, project = await board(api)
    due = now() + dt.timedelta(hours=3)
    await task_due(api, owner, project, assignee, due)
    assert await reminders.sweep(due + dt.timedelta(hours=1)) == 1  # down through both
    assert await reminded(api, assignee) == ["TASK_OVERDUE"]


async def test_changing_the_due_date_re_arms_and_clearing_it_cancels(api: Api) -> None:
    owner, assignee, project = await board(api)
    due = now() + dt.timedelta(minutes=30)
    task = await task_due(api, owner, project, assignee, due)
    assert await reminders.sweep() == 1
    later = due + dt.timedelta(days=1)
    await api.ok(owner, DUE, id=task, due=later.isoformat())
    assert await reminders.sweep(due + dt.timedelta(minutes=1)) == 0  # not overdue any more
    assert await reminders.sweep(later - dt.timedelta(minutes=30)) == 1  # due soon again
    await api.ok(owner, DUE, id=task, due=None)
    assert await reminders.sweep(later + dt.timedelta(days=1)) == 0
    assert await reminded(api, assignee) == ["TASK_DUE_SOON", "TASK_DUE_SOON"]


async def test_no_reminders_without_an_assignee_or_once_done(api: Api) -> None:
    owner, assignee, project = await board(api)
    due = now() + dt.timedelta(minutes=30)
    unassigned = await task_due(api, owner, project, None, due)
    done = await task_due(api, owner, project, assignee, due)
    await api.ok(owner, COMPLETE, id=done)
    assert await reminders.sweep(due + dt.timedelta(hours=1)) == 0
    # Assigning later arms it: the new assignee is reminded.
    await api.ok(owner, ASSIGN, id=unassigned, a=assignee.id)
    assert await reminders.sweep(due + dt.timedelta(hours=1)) == 1
    assert await reminded(api, assignee) == ["TASK_OVERDUE"]


async def test_reminders_follow_preferences(api: Api) -> None:
    owner, assignee, project = await board(api)
    off = {"types": [{"type": "TASK_DUE_SOON", "inApp": False, "browser": False, "email": False}]}
    await api.ok(assignee, UPDATE_PREFERENCES, input=off)
    due = now() + dt.timedelta(minutes=30)
    await task_due(api, owner, project, assignee, due)
    await reminders.sweep()
    await reminders.sweep(due + dt.timedelta(minutes=1))
    assert await reminded(api, assignee) == ["TASK_OVERDUE"]


async def test_the_lead_time_is_a_preference_and_moves_pending_reminders(api: Api) -> None:
    owner, assignee, project = await board(api)
    due = now() + dt.timedelta(minutes=30)
    await task_due(api, owner, project, assignee, due)  # inside the default hour: due at once
    assert (await api.ok(assignee, LEAD, m=10))["updatePreferences"]["dueReminderMinutes"] == 10
    assert await reminders.sweep() == 0  # now ten minutes before
    assert await reminders.sweep(due - dt.timedelta(minutes=9)) == 1
    assert await reminded(api, assignee) == ["TASK_DUE_SOON"]


@pytest.mark.parametrize("minutes", [0, -5, 7 * 24 * 60 + 1])
async def test_a_lead_time_out_of_range_is_bad_input(api: Api, minutes: int) -> None:
    member = await api.person()
    error = await api.error(member, LEAD, m=minutes)
    assert (code(error), error["extensions"]["field"]) == ("BAD_USER_INPUT", "dueReminderMinutes")


@pytest.mark.skipif(
    not (ON_POSTGRES and BROADCAST_URL.startswith("redis")),
    reason="several workers need PostgreSQL and Redis (the suite's second pass)",
)
async def test_two_workers_send_each_reminder_once(settings: Settings) -> None:
    fast = {"PULSEBOARD_REMINDER_INTERVAL_SECONDS": "0.05"}  # many sweeps of each, side by side
    with worker_processes(settings, 2, env=fast) as (first, second):
        owner, doer = first.token("owner@example.test"), first.token("doer@example.test")
        created = await first.gql(owner, 'mutation { createProject(input: {name: "R"}) { id } }')
        project = created["createProject"]["id"]
        doer_id = (await second.gql(doer, "{ viewer { id } }"))["viewer"]["id"]
        admin = first.token("admin@example.test", Role.ADMIN)
        await first.gql(admin, ADD_MEMBER, p=project, u=doer_id)
        due = now() + dt.timedelta(seconds=2)
        for _ in range(5):  # inside the lead time: due soon at once, overdue in two seconds
            await first.gql(owner, CREATE, p=project, a=doer_id, due=due.isoformat())
        query = "{ notifications(first: 100) { edges { node { type taskId } } } }"

        async def seen() -> list[tuple[str, str]]:
            data = await second.gql(doer, query)
            found = [(e["node"]["type"], e["node"]["taskId"]) for e in data["notifications"]["edges"]]
            return sorted(entry for entry in found if entry[0] in REMINDERS)

        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while len(await seen()) < 10 and loop.time() < deadline:  # noqa: ASYNC110 (another process)
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)  # many sweeps of both workers later: nothing was sent twice
        got = await seen()
        tasks = {task for _, task in got}
        assert len(tasks) == 5, got
        assert got == sorted((kind, task) for task in tasks for kind in REMINDERS)
