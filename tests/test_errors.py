"""Every error leaves with a code clients can rely on; unexpected ones are masked in production;
settings the service cannot work with are refused at start."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pulseboard.resolvers import projects
from pulseboard.settings import Settings, SettingsError, from_env
from tests.helpers import Api, code, serving
from tests.live import LiveServer, ws

GOOD_SECRET = "s" * 48


async def still_answers(api: Api) -> None:
    member = await api.person()
    assert (await api.ok(member, "{ viewer { id } }"))["viewer"]["id"] == member.id


# --- GraphQL errors ---------------------------------------------------------------------------


async def test_syntax_error(api: Api) -> None:
    member = await api.person()
    error = await api.error(member, "{ viewer { id ")
    assert code(error) == "GRAPHQL_PARSE_FAILED"
    assert error["message"].startswith("Syntax Error")


async def test_unknown_field(api: Api) -> None:
    member = await api.person()
    error = await api.error(member, "{ viewer { shoeSize } }")
    assert code(error) == "GRAPHQL_VALIDATION_FAILED"
    assert "shoeSize" in error["message"]


@pytest.mark.parametrize(
    ("query", "variables", "field"),
    [
        ("query($howMany: Int) { projects(first: $howMany) { totalCount } }", {"howMany": "ten"}, "howMany"),
        (
            "query($p: ID!, $column: TaskStatus) { tasks(projectId: $p, status: $column) { totalCount } }",
            {"p": "1", "column": "WONT_DO"},
            "column",
        ),
        ("query($id: ID!) { task(id: $id) { id } }", {}, "id"),
    ],
    ids=["wrong-type", "unknown-enum", "missing"],
)
async def test_bad_variable_names_the_variable(api: Api, query: str, variables: dict, field: str) -> None:
    member = await api.person()
    error = await api.error(member, query, **variables)
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": field}


@pytest.mark.parametrize("task_id", ["424242", "not-a-number", "-1", "99999999999"])
async def test_unknown_id_is_not_found(api: Api, task_id: str) -> None:
    member = await api.person()
    error = await api.error(member, "query($id: ID!) { task(id: $id) { id } }", id=task_id)
    assert code(error) == "NOT_FOUND"
    assert error["message"] == f"Task {task_id} not found."


@pytest.mark.parametrize(
    ("limit", "query", "expected_code", "words"),
    [
        (
            {"max_query_depth": 3},
            "{ projects { edges { node { members { id } } } } }",
            "GRAPHQL_VALIDATION_FAILED",
            "depth",
        ),
        (
            {"max_aliases": 2},
            "{ a: viewer { id } b: viewer { id } c: viewer { id } }",
            "GRAPHQL_VALIDATION_FAILED",
            "aliases",
        ),
        (
            {"max_tokens": 20},
            "{ viewer { " + "id name email role " * 5 + "} }",
            "GRAPHQL_PARSE_FAILED",
            "tokens",
        ),
    ],
    ids=["depth", "aliases", "tokens"],
)
async def test_query_over_a_limit_is_refused(
    settings: Settings, limit: dict, query: str, expected_code: str, words: str
) -> None:
    async with serving(dataclasses.replace(settings, **limit)) as api:
        member = await api.person()
        error = await api.error(member, query)
        assert code(error) == expected_code
        assert words in error["message"]
        assert (await api.post(member, query))["data"] is None  # refused every time, not just once
        await still_answers(api)


# A document of several operations runs the one operationName names; without it, none.
SEVERAL = (
    'mutation Make { createProject(input: {name: "made"}) { id } } query Look { projects { totalCount } }'
)


@pytest.mark.parametrize(
    ("accept", "status"), [("application/graphql-response+json", 400), ("application/json", 200)]
)
async def test_several_operations_without_operation_name_run_none(api: Api, accept: str, status: int) -> None:
    member = await api.person()
    headers = {"authorization": f"Bearer {member.token}", "accept": accept}
    response = await api.http.post("/graphql", json={"query": SEVERAL}, headers=headers)
    assert response.status_code == status
    body = response.json()
    assert body.get("data") is None
    assert [e["extensions"]["code"] for e in body["errors"]] == ["GRAPHQL_VALIDATION_FAILED"]
    assert "operationName" in body["errors"][0]["message"]
    named = await api.http.post("/graphql", json={"query": SEVERAL, "operationName": "Look"}, headers=headers)
    assert named.json() == {"data": {"projects": {"totalCount": 0}}}  # the mutation never ran


async def test_several_operations_without_operation_name_over_get(api: Api) -> None:
    query = "query A { viewer { id } } query B { viewer { name } }"
    response = await api.http.get(
        "/graphql", params={"query": query}, headers={"accept": "application/graphql-response+json"}
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


@pytest.mark.parametrize(
    "query",
    [
        SEVERAL,
        "subscription A { notifications { type } } subscription B { notifications { cursor } }",
    ],
    ids=["mutation-and-query", "subscriptions"],
)
async def test_several_operations_without_operation_name_over_the_socket(
    live: LiveServer, query: str
) -> None:
    token = live.token("a@example.test")
    async with ws(live, token) as client:
        await client.subscribe("1", query)
        message = await client.receive()
        assert message["type"] == "error" and message["id"] == "1", message
        assert [e["extensions"]["code"] for e in message["payload"]] == ["GRAPHQL_VALIDATION_FAILED"]
        await client.subscribe("2", "{ projects { totalCount } }")
        assert await client.next("2") == {"projects": {"totalCount": 0}}  # nothing ran; still open


# --- unexpected exceptions --------------------------------------------------------------------


@pytest.fixture
def broken_projects(monkeypatch: pytest.MonkeyPatch) -> None:
    async def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(projects, "projects", explode)


@pytest.mark.usefixtures("broken_projects")
@pytest.mark.parametrize("env", ["production", "development"])
async def test_unexpected_error_is_masked_in_production(settings: Settings, env: str) -> None:
    async with serving(dataclasses.replace(settings, env=env, jwt_secret=GOOD_SECRET)) as api:
        member = await api.person()
        response = await api.http.post(
            "/graphql",
            json={"query": "{ projects { totalCount } }"},
            headers={"authorization": f"Bearer {member.token}"},
        )
        assert response.status_code == 200
        error = response.json()["errors"][0]
        assert error["extensions"] == {"code": "INTERNAL_SERVER_ERROR"}
        assert error["path"] == ["projects"]
        if env == "production":
            assert error["message"] == "Internal server error."
            for leak in ("secret detail", "RuntimeError", "Traceback", "explode"):
                assert leak not in response.text
        else:
            assert error["message"] == "secret detail"
        # Expected errors keep their message and code, and the server keeps answering.
        not_found = await api.error(member, '{ task(id: "7") { id } }')
        assert (not_found["message"], code(not_found)) == ("Task 7 not found.", "NOT_FOUND")
        await still_answers(api)


# --- malformed HTTP requests ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"{not json", "application/json"),
        (b'{"variables": {}}', "application/json"),  # no query
        (b'{"query": null}', "application/json"),
        (b"[1, 2]", "application/json"),
        (b"{ viewer { id } }", "text/plain"),
    ],
    ids=["bad-json", "no-query", "null-query", "batch", "text-plain"],
)
async def test_malformed_http_request_is_a_client_error(api: Api, content: bytes, content_type: str) -> None:
    member = await api.person()
    response = await api.http.post(
        "/graphql",
        content=content,
        headers={"content-type": content_type, "authorization": f"Bearer {member.token}"},
    )
    assert 400 <= response.status_code < 500, response.text
    await still_answers(api)


# --- settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"env": "production", "jwt_secret": ""}, "PULSEBOARD_JWT_SECRET"),
        ({"env": "production", "jwt_secret": "changeme"}, "PULSEBOARD_JWT_SECRET"),
        ({"env": "production", "jwt_secret": "SECRET"}, "PULSEBOARD_JWT_SECRET"),
        ({"env": "production", "jwt_secret": "x" * 31}, "PULSEBOARD_JWT_SECRET"),
        ({"env": "staging"}, "PULSEBOARD_ENV"),
        ({"workers": 0}, "PULSEBOARD_WORKERS"),
        ({"workers": 2, "database_url": "sqlite://./db.sqlite"}, "SQLite"),
        ({"workers": 2, "broadcast_url": "memory://"}, "broadcast"),
    ],
    ids=["no-secret", "placeholder", "placeholder-upper", "short", "env", "no-workers", "sqlite", "memory"],
)
def test_unworkable_settings_are_refused(overrides: dict, message: str) -> None:
    workable = Settings(
        env="production",
        jwt_secret=GOOD_SECRET,
        database_url="postgres://db/app",
        broadcast_url="redis://r:6379",
        workers=4,
    )
    assert workable.check() is workable
    with pytest.raises(SettingsError, match=message):
        dataclasses.replace(workable, **overrides).check()


def test_development_needs_no_secret() -> None:
    assert not Settings(jwt_secret="").check().production


def test_from_env_reads_pulseboard_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # where a development secret file would be written
    settings = from_env(
        {
            "PULSEBOARD_ENV": "production",
            "PULSEBOARD_JWT_SECRET": GOOD_SECRET,
            "PULSEBOARD_DATABASE_URL": "postgres://db/app",
            "PULSEBOARD_BROADCAST_URL": "redis://r:6379",
            "PULSEBOARD_WORKERS": "3",
            "PULSEBOARD_PORT": "9000",
            "PULSEBOARD_ALLOWED_ORIGINS": "https://a.example, https://b.example,",
            "PULSEBOARD_MAX_QUERY_DEPTH": "5",
            "PULSEBOARD_MAX_ALIASES": "6",
            "PULSEBOARD_MAX_TOKENS": "700",
            "UNRELATED": "ignored",
        }
    )
    assert settings.production
    assert settings.jwt_secret == GOOD_SECRET
    assert settings.database_url == "postgres://db/app"
    assert settings.broadcast_url == "redis://r:6379"
    assert (settings.workers, settings.port) == (3, 9000)
    assert settings.allowed_origins == ("https://a.example", "https://b.example")
    assert (settings.max_query_depth, settings.max_aliases, settings.max_tokens) == (5, 6, 700)
    assert settings.introspection is False  # off by default in production
    assert list(tmp_path.iterdir()) == []


def test_from_env_checks_what_it_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SettingsError, match="PULSEBOARD_JWT_SECRET"):
        from_env({"PULSEBOARD_ENV": "production"})
    with pytest.raises(SettingsError, match="SQLite"):
        from_env(
            {
                "PULSEBOARD_ENV": "production",
                "PULSEBOARD_JWT_SECRET": GOOD_SECRET,
                "PULSEBOARD_WORKERS": "2",
                "PULSEBOARD_BROADCAST_URL": "redis://r:6379",
            }
        )
    assert list(tmp_path.iterdir()) == []
