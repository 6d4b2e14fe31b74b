"""Hostile input gets a documented error code, never an internal error: due dates at the edges of
the datetime range, text with lone surrogates, control or only invisible characters, and validly
signed tokens whose claims the service cannot use. Each time the server keeps answering and
nothing is stored."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
from jwt.api_jws import PyJWS
from tortoise.models import Model

from pulseboard import auth
from pulseboard.models import (
    Event,
    Notification,
    Project,
    Queue,
    Role,
    Task,
    TaskComment,
    Team,
    Ticket,
    TicketComment,
    User,
)
from tests.helpers import Api, Person, code
from tests.live import LiveServer, ws

FAR_FUTURE = 4_102_444_800  # 2100-01-01
# An expiry within the maximum token lifetime, for tokens that must be accepted.
SOON = int(time.time()) + 86_400
VIEWER = "{ viewer { id email name role } }"
STORED: tuple[type[Model], ...] = (
    User,
    Project,
    Task,
    TaskComment,
    Team,
    Queue,
    Ticket,
    TicketComment,
    Event,
    Notification,
)


async def stored() -> dict[str, int]:
    """How many rows each table that client input lands in holds."""
    return {model.__name__: await model.all().count() for model in STORED}


async def post(api: Api, who: Person | str | None, query: str, variables: dict[str, Any]) -> dict:
    """One GraphQL request whose JSON escapes everything outside ASCII, so that a lone surrogate
    travels as `\\ud800` (what a JavaScript client sends; UTF-8 cannot carry one)."""
    token = who.token if isinstance(who, Person) else who
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    content = json.dumps({"query": query, "variables": variables}, ensure_ascii=True)
    response = await api.http.post("/graphql", content=content, headers=headers)
    assert response.status_code in (200, 400), response.text
    return response.json()  # type: ignore[no-any-return]


async def refused(api: Api, who: Person | str | None, query: str, variables: dict[str, Any]) -> dict:
    body = await post(api, who, query, variables)
    assert body.get("errors") and not body.get("data"), body
    return body["errors"][0]  # type: ignore[no-any-return]


def bad_input(error: dict, field: str) -> None:
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": field}, error


async def still_answers(api: Api) -> None:
    member = await api.person()
    assert (await api.ok(member, "{ viewer { id } }"))["viewer"]["id"] == member.id


# --- a little of everything, to write to -------------------------------------------------------


@dataclass(frozen=True)
class World:
    admin: Person
    project: str
    task: str
    team: str
    queue: str
    ticket: str


async def world(api: Api) -> World:
    admin = await api.person(Role.ADMIN)
    project = (await api.ok(admin, CREATE_PROJECT, input={"name": "Board"}))["createProject"]["id"]
    task = (await api.ok(admin, CREATE_TASK, input={"projectId": project, "title": "Task"}))["createTask"]
    team = (await api.ok(admin, CREATE_TEAM, input={"name": "Support"}))["createTeam"]["id"]
    queue_input = {"teamId": team, "name": "Desk", "slaFirstResponseMinutes": 60, "slaResolutionMinutes": 480}
    queue = (await api.ok(admin, CREATE_QUEUE, input=queue_input))["createQueue"]["id"]
    await api.ok(
        admin,
        "mutation($t: ID!, $u: ID!) { addTeamMember(teamId: $t, userId: $u) { id } }",
        t=team,
        u=admin.id,
    )
    ticket = (await api.ok(admin, CREATE_TICKET, input={"queueId": queue, "title": "Help"}))["createTicket"]
    return World(admin, project, task["id"], team, queue, ticket["id"])


CREATE_PROJECT = (
    "mutation($input: CreateProjectInput!) { createProject(input: $input) { id name description } }"
)
CREATE_TEAM = "mutation($input: CreateTeamInput!) { createTeam(input: $input) { id name } }"
CREATE_TASK = """
mutation($input: CreateTaskInput!) { createTask(input: $input) { id title description dueAt version } }"""
UPDATE_TASK = """
mutation($id: ID!, $input: UpdateTaskInput!) {
  updateTask(id: $id, input: $input) { id title description dueAt version }
}"""
TASK = "query($id: ID!) { task(id: $id) { id title description dueAt version } }"
TASK_COMMENT = "mutation($id: ID!, $body: String!) { addTaskComment(taskId: $id, body: $body) { id body } }"
CREATE_QUEUE = "mutation($input: CreateQueueInput!) { createQueue(input: $input) { id name } }"
CREATE_TICKET = (
    "mutation($input: CreateTicketInput!) { createTicket(input: $input) { id title description } }"
)
UPDATE_TICKET = """
mutation($id: ID!, $input: UpdateTicketInput!) {
  updateTicket(id: $id, input: $input) { id title description }
}"""
TICKET = "query($id: ID!) { ticket(id: $id) { id title description version } }"
TICKET_COMMENT = (
    "mutation($id: ID!, $body: String!) { addTicketComment(ticketId: $id, body: $body) { id body } }"
)


@dataclass(frozen=True)
class TextInput:
    query: str
    variables: Callable[[World, str], dict[str, Any]]
    field: str
    multiline: bool  # free text (tab, newline and carriage return allowed) or a single line
    required: bool


# Every text argument of every mutation.
TEXT_INPUTS = {
    "createProject.name": TextInput(CREATE_PROJECT, lambda w, v: {"input": {"name": v}}, "name", False, True),
    "createProject.description": TextInput(
        CREATE_PROJECT, lambda w, v: {"input": {"name": "P", "description": v}}, "description", True, False
    ),
    "createTeam.name": TextInput(CREATE_TEAM, lambda w, v: {"input": {"name": v}}, "name", False, True),
    "createTask.title": TextInput(
        CREATE_TASK, lambda w, v: {"input": {"projectId": w.project, "title": v}}, "title", False, True
    ),
    "createTask.description": TextInput(
        CREATE_TASK,
        lambda w, v: {"input": {"projectId": w.project, "title": "T", "description": v}},
        "description",
        True,
        False,
    ),
    "updateTask.title": TextInput(
        UPDATE_TASK, lambda w, v: {"id": w.task, "input": {"title": v}}, "title", False, True
    ),
    "updateTask.description": TextInput(
        UPDATE_TASK, lambda w, v: {"id": w.task, "input": {"description": v}}, "description", True, False
    ),
    "addTaskComment.body": TextInput(
        TASK_COMMENT, lambda w, v: {"id": w.task, "body": v}, "body", True, True
    ),
    "createQueue.name": TextInput(
        CREATE_QUEUE,
        lambda w, v: {
            "input": {"teamId": w.team, "name": v, "slaFirstResponseMinutes": 1, "slaResolutionMinutes": 1}
        },
        "name",
        False,
        True,
    ),
    "createTicket.title": TextInput(
        CREATE_TICKET, lambda w, v: {"input": {"queueId": w.queue, "title": v}}, "title", False, True
    ),
    "createTicket.description": TextInput(
        CREATE_TICKET,
        lambda w, v: {"input": {"queueId": w.queue, "title": "T", "description": v}},
        "description",
        True,
        False,
    ),
    "updateTicket.title": TextInput(
        UPDATE_TICKET, lambda w, v: {"id": w.ticket, "input": {"title": v}}, "title", False, True
    ),
    "updateTicket.description": TextInput(
        UPDATE_TICKET, lambda w, v: {"id": w.ticket, "input": {"description": v}}, "description", True, False
    ),
    "addTicketComment.body": TextInput(
        TICKET_COMMENT, lambda w, v: {"id": w.ticket, "body": v}, "body", True, True
    ),
}

UNSTORABLE = [
    "Lone \ud800 high surrogate",
    "Lone \udfff low surrogate",
    "\ud800",
    "NUL \x00 inside",
    "ends in NUL\x00",
    "bell \x07",
    "\x1b[31mred\x1b[0m",
    "backspace\x08",
    "delete \x7f",
    "C1 \x9b control",
    "next\x85line",
]
LINE_BREAKS = ["two\nlines", "carriage\rreturn", "tab\tinside", "line\u2028separator", "para\u2029graph"]
INVISIBLE = [
    "\u200b",
    "\u200b\u200c\u200d\u2060\ufeff",
    " \u200b \u00a0\u3000\u2060 ",
    "\u00ad",  # soft hyphen
    "\u180e\u2061\u2062\u2063\u2064",  # Mongolian vowel separator, invisible operators
    "\u202e\u2066\u2069",  # bidirectional controls
    "\U000e0001\U000e0020",  # tag characters
    "\u3164\u115f\uffa0",  # Hangul fillers: letters that draw nothing
    "\u034f\ufe0f",  # combining grapheme joiner, variation selector
    "\u2800",  # braille pattern blank
]


async def snapshot(api: Api, w: World) -> dict[str, Any]:
    """What a refused write must leave as it was."""
    task = (await api.ok(w.admin, TASK, id=w.task))["task"]
    ticket = (await api.ok(w.admin, TICKET, id=w.ticket))["ticket"]
    return {"rows": await stored(), "task": task, "ticket": ticket}


@pytest.mark.parametrize("name", list(TEXT_INPUTS))
async def test_text_that_cannot_be_stored_is_refused(api: Api, name: str) -> None:
    spec = TEXT_INPUTS[name]
    w = await world(api)
    before = await snapshot(api, w)
    refusals = UNSTORABLE + ([] if spec.multiline else LINE_BREAKS)
    for value in refusals:
        error = await refused(api, w.admin, spec.query, spec.variables(w, value))
        bad_input(error, spec.field)
        assert "\\u" not in json.dumps(error["message"]), error  # the value is not echoed
    assert await snapshot(api, w) == before
    await still_answers(api)


@pytest.mark.parametrize("name", [n for n, spec in TEXT_INPUTS.items() if spec.required])
async def test_text_of_invisible_characters_is_empty(api: Api, name: str) -> None:
    spec = TEXT_INPUTS[name]
    w = await world(api)
    before = await snapshot(api, w)
    for value in INVISIBLE:
        error = await refused(api, w.admin, spec.query, spec.variables(w, value))
        bad_input(error, spec.field)
        assert error["message"] == f"{spec.field} must not be empty.", value
    assert await snapshot(api, w) == before
    await still_answers(api)


async def test_optional_text_of_invisible_characters_is_stored_empty(api: Api) -> None:
    w = await world(api)
    created = await post(
        api,
        w.admin,
        CREATE_TASK,
        {"input": {"projectId": w.project, "title": "T", "description": "\u200b\ufeff"}},
    )
    assert created["data"]["createTask"]["description"] == "", created


@pytest.mark.parametrize(
    "value",
    [
        "Caf\u00e9 \u2615 \u05e2\u05d1\u05e8\u05d9\u05ea \u4e2d\u6587",
        "\U0001f469\u200d\U0001f4bb pairs \U0001f600 and a joiner",  # surrogate pairs in the JSON
        "\u200bleading zero-width space, then text",
    ],
)
async def test_ordinary_unicode_is_kept_exactly(api: Api, value: str) -> None:
    w = await world(api)
    created = await post(api, w.admin, CREATE_TASK, {"input": {"projectId": w.project, "title": value}})
    task = created["data"]["createTask"]
    assert task["title"] == value
    assert (await api.ok(w.admin, TASK, id=task["id"]))["task"]["title"] == value


async def test_free_text_keeps_its_layout(api: Api) -> None:
    w = await world(api)
    body = "Steps:\n\t1. plug in\r\n\t2. switch on"
    assert (await api.ok(w.admin, TASK_COMMENT, id=w.task, body=body))["addTaskComment"]["body"] == body
    described = await api.ok(w.admin, UPDATE_TICKET, id=w.ticket, input={"description": body})
    assert described["updateTicket"]["description"] == body


# --- due dates ---------------------------------------------------------------------------------

# Valid ISO 8601 with an offset, but the instant in UTC is outside what a datetime holds.
UNREPRESENTABLE = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "0001-01-01T00:59:59+01:00"]


@pytest.mark.parametrize("due_at", UNREPRESENTABLE)
async def test_create_task_with_a_due_date_beyond_the_range(api: Api, due_at: str) -> None:
    w = await world(api)
    before = await snapshot(api, w)
    error = await refused(
        api, w.admin, CREATE_TASK, {"input": {"projectId": w.project, "title": "T", "dueAt": due_at}}
    )
    bad_input(error, "dueAt")
    assert await snapshot(api, w) == before
    await still_answers(api)


@pytest.mark.parametrize("due_at", UNREPRESENTABLE)
async def test_update_task_with_a_due_date_beyond_the_range(api: Api, due_at: str) -> None:
    w = await world(api)
    before = await snapshot(api, w)
    error = await refused(
        api, w.admin, UPDATE_TASK, {"id": w.task, "input": {"dueAt": due_at, "title": "New"}}
    )
    bad_input(error, "dueAt")
    assert await snapshot(api, w) == before
    await still_answers(api)


@pytest.mark.parametrize(
    ("due_at", "in_utc"),
    [
        ("0001-01-01T00:00:00-14:00", "0001-01-01T14:00:00+00:00"),
        ("9999-12-31T23:59:59+14:00", "9999-12-31T09:59:59+00:00"),
        ("2030-06-01T12:00:00+02:00", "2030-06-01T10:00:00+00:00"),
        ("2030-06-01T12:00:00", "2030-06-01T12:00:00+00:00"),  # no offset: UTC
    ],
)
async def test_due_dates_in_range_are_kept_in_utc(api: Api, due_at: str, in_utc: str) -> None:
    w = await world(api)
    created = await api.ok(
        w.admin, CREATE_TASK, input={"projectId": w.project, "title": "T", "dueAt": due_at}
    )
    assert created["createTask"]["dueAt"] == in_utc
    assert (await api.ok(w.admin, TASK, id=created["createTask"]["id"]))["task"]["dueAt"] == in_utc
    updated = await api.ok(w.admin, UPDATE_TASK, id=w.task, input={"dueAt": due_at})
    assert updated["updateTask"]["dueAt"] == in_utc


# --- tokens ------------------------------------------------------------------------------------


def signed(api: Api, **claims: object) -> str:
    return jwt.encode(claims, api.settings.jwt_secret, algorithm="HS256")


def signed_json(secret: str, payload: str) -> str:
    """A token over a payload written by hand (one jwt.encode would refuse to write)."""
    return PyJWS().encode(payload.encode(), secret, algorithm="HS256")


SUB = "odd@example.test"
# Validly signed, yet no user can be made of them (each was a plain-text 500 and a reset
# connection, or a user row the database refused, or a user holding unusable text).
BAD_CLAIMS: dict[str, dict[str, object]] = {
    "name-too-long": {"sub": SUB, "name": "n" * 201, "exp": FAR_FUTURE},
    "sub-too-long": {"sub": "s" * 256, "exp": FAR_FUTURE},
    "email-too-long": {"sub": SUB, "email": "e" * 244 + "@example.test", "exp": FAR_FUTURE},
    "exp-1e20": {"sub": SUB, "exp": 10**20},
    "exp-1e300": {"sub": SUB, "exp": 1e300},
    "exp-string": {"sub": SUB, "exp": str(FAR_FUTURE)},
    "name-number": {"sub": SUB, "name": 42, "exp": FAR_FUTURE},
    "name-list": {"sub": SUB, "name": ["Ada"], "exp": FAR_FUTURE},
    "name-true": {"sub": SUB, "name": True, "exp": FAR_FUTURE},
    "email-number": {"sub": SUB, "email": 42, "exp": FAR_FUTURE},
    "email-object": {"sub": SUB, "email": {"address": "a@b"}, "exp": FAR_FUTURE},
    "sub-nul": {"sub": "a\x00b", "exp": FAR_FUTURE},
    "name-nul": {"sub": SUB, "name": "Ada\x00", "exp": FAR_FUTURE},
    "name-surrogate": {"sub": SUB, "name": "Ada \ud800", "exp": FAR_FUTURE},
    "email-surrogate": {"sub": SUB, "email": "\udc00@example.test", "exp": FAR_FUTURE},
    "sub-surrogate": {"sub": "\ud800", "exp": FAR_FUTURE},
    "name-newline": {"sub": SUB, "name": "Ada\nAdmin", "exp": FAR_FUTURE},
}
# Odd registered claims that PyJWT itself refuses; kept so that stays so (with any upgrade).
REFUSED_BY_PYJWT: dict[str, dict[str, object]] = {
    "exp-nan": {"sub": SUB, "exp": math.nan},
    "exp-infinity": {"sub": SUB, "exp": math.inf},
    "exp-list": {"sub": SUB, "exp": [FAR_FUTURE]},
    "iat-string": {"sub": SUB, "exp": FAR_FUTURE, "iat": "yesterday"},
    "iat-future": {"sub": SUB, "exp": FAR_FUTURE, "iat": 10**20},
    "iat-nan": {"sub": SUB, "exp": FAR_FUTURE, "iat": math.nan},
    "nbf-object": {"sub": SUB, "exp": FAR_FUTURE, "nbf": {"at": 1}},
    "nbf-future": {"sub": SUB, "exp": FAR_FUTURE, "nbf": 10**20},
    "nbf-infinity": {"sub": SUB, "exp": FAR_FUTURE, "nbf": -math.inf},
    "sub-number": {"sub": 42, "exp": FAR_FUTURE},
}
# Nesting deeper than Python's JSON parser recurses (jwt.encode cannot write it).
DEEP = '{"sub": "odd@example.test", "exp": 4102444800, "x": ' + "[" * 5_000 + "]" * 5_000 + "}"


def bad_token(secret: str, name: str) -> str:
    if name == "deeply-nested":
        return signed_json(secret, DEEP)
    claims = BAD_CLAIMS.get(name) or REFUSED_BY_PYJWT[name]
    return jwt.encode(claims, secret, algorithm="HS256")


async def assert_invalid_token(api: Api, token: str) -> None:
    """The bad-token answer, as a bad signature gets it; no user is made or changed."""
    await still_answers(api)
    before = await stored()
    response = await api.http.post(
        "/graphql", json={"query": VIEWER}, headers={"authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["data"] is None, body
    error = body["errors"][0]
    assert code(error) == "UNAUTHENTICATED", error
    assert error["message"].startswith("Invalid token"), error
    assert token.split(".")[1][:16] not in response.text and token.split(".")[2] not in response.text
    assert await stored() == before
    await still_answers(api)


@pytest.mark.parametrize("name", list(BAD_CLAIMS))
async def test_signed_token_with_unusable_claims_is_an_invalid_token(api: Api, name: str) -> None:
    await assert_invalid_token(api, bad_token(api.settings.jwt_secret, name))


@pytest.mark.parametrize("name", [*REFUSED_BY_PYJWT, "deeply-nested"])
async def test_signed_token_with_odd_registered_claims_is_an_invalid_token(api: Api, name: str) -> None:
    await assert_invalid_token(api, bad_token(api.settings.jwt_secret, name))


async def test_a_name_falls_back_to_the_email_or_subject_within_the_column(api: Api) -> None:
    email = "e" * 242 + "@example.test"  # 255: as long as the column allows
    data = await api.ok(signed(api, sub="long-email", email=email, exp=SOON), VIEWER)
    assert data["viewer"]["email"] == email
    assert data["viewer"]["name"] == email[:200]
    sub = "s" * 255
    assert (await api.ok(signed(api, sub=sub, exp=SOON), VIEWER))["viewer"]["name"] == sub[:200]


async def test_claims_at_the_column_widths_are_fine(api: Api) -> None:
    claims = {"sub": "s" * 255, "email": "e" * 242 + "@example.test", "name": "n" * 200, "exp": SOON}
    viewer = (await api.ok(signed(api, **claims), VIEWER))["viewer"]
    assert (viewer["email"], viewer["name"]) == (claims["email"], claims["name"])
    widths = [User._meta.fields_map[column].max_length for column in ("sub", "email", "name")]  # type: ignore[attr-defined]
    assert widths == [auth.SUB_MAX, auth.EMAIL_MAX, auth.NAME_MAX]


@pytest.mark.parametrize(
    "name",
    ["name-too-long", "sub-too-long", "exp-1e20", "exp-string", "name-number", "sub-nul", "name-surrogate"],
)
async def test_signed_token_with_unusable_claims_closes_the_socket_4403(live: LiveServer, name: str) -> None:
    token = bad_token(live.settings.jwt_secret, name)
    users = await User.all().count()
    async with ws(live) as client:
        await client.send({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
        close_code, reason = await client.closed()
    assert close_code == 4403
    assert token.split(".")[2] not in reason
    assert await User.all().count() == users
    # The server still takes good tokens, on a socket and over HTTP.
    good = live.token("fine@example.test")
    async with ws(live, good):
        pass
    assert (await live.gql(good, "{ viewer { email } }"))["viewer"]["email"] == "fine@example.test"
