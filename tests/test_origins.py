"""One list of browser origins, PULSEBOARD_ALLOWED_ORIGINS, for HTTP (CORS) and WebSockets alike;
the old PULSEBOARD_CORS_ORIGINS still works while it is unset, with a warning naming the new one."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from pulseboard import settings as settings_module
from pulseboard.settings import Settings, SettingsError, from_env
from tests.live import PROTOCOL, TIMEOUT, LiveServer, http_client, serve, worker_process

APP = "https://app.example.test"
EVIL = "https://evil.example.test"
PREFLIGHT = {"access-control-request-method": "POST", "access-control-request-headers": "authorization"}
SECRET = {"PULSEBOARD_JWT_SECRET": "s" * 48}


@pytest.fixture
def fresh(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """A process that has warned of nothing yet, its WARNINGs captured."""
    monkeypatch.setattr(settings_module, "_warned", set())
    caplog.set_level(logging.WARNING, logger="pulseboard")


def logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


@pytest.mark.usefixtures("fresh")
def test_allowed_origins_are_read_as_browsers_send_them(caplog: pytest.LogCaptureFixture) -> None:
    read = from_env(
        {**SECRET, "PULSEBOARD_ALLOWED_ORIGINS": "HTTPS://App.Example.test:443/, http://[::1]:8080"}
    )
    assert read.origins == (APP, "http://[::1]:8080")
    assert from_env({**SECRET, "PULSEBOARD_ALLOWED_ORIGINS": "*"}).origins == ("*",)
    assert from_env(SECRET).origins == ()
    assert not logged(caplog)


@pytest.mark.parametrize(
    "origin", ["app.example.test", "https://app.example.test/graphql", "ftp://app.example.test", "https://"]
)
def test_an_entry_that_is_not_an_origin_is_refused(origin: str) -> None:
    with pytest.raises(SettingsError, match="PULSEBOARD_ALLOWED_ORIGINS"):
        from_env({**SECRET, "PULSEBOARD_ALLOWED_ORIGINS": f"{APP},{origin}"})
    with pytest.raises(SettingsError, match=r"PULSEBOARD_CORS_ORIGINS: .* is not an origin"):
        Settings(cors_origins=(origin,)).check()


@pytest.mark.usefixtures("fresh")
def test_the_old_name_is_used_while_the_new_one_is_unset_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    environ = {**SECRET, "PULSEBOARD_CORS_ORIGINS": APP}
    assert from_env(environ).origins == (APP,)
    assert from_env(environ).origins == (APP,)  # every worker reads it: still one warning
    [warning] = logged(caplog)
    assert "PULSEBOARD_CORS_ORIGINS is deprecated" in warning and "PULSEBOARD_ALLOWED_ORIGINS" in warning


@pytest.mark.usefixtures("fresh")
@pytest.mark.parametrize("new", [EVIL, ""], ids=["listed", "set-empty"])
def test_the_old_name_is_ignored_once_the_new_one_is_set(caplog: pytest.LogCaptureFixture, new: str) -> None:
    read = from_env({**SECRET, "PULSEBOARD_CORS_ORIGINS": APP, "PULSEBOARD_ALLOWED_ORIGINS": new})
    assert read.origins == ((EVIL,) if new else ())
    [warning] = logged(caplog)
    assert "PULSEBOARD_CORS_ORIGINS is ignored" in warning and "PULSEBOARD_ALLOWED_ORIGINS is set" in warning


async def browser_reach(server: LiveServer, origin: str) -> tuple[bool, bool]:
    """Whether a page on `origin` may call the HTTP API (a CORS preflight), and open a socket."""
    async with http_client(timeout=TIMEOUT) as http:
        preflight = await http.options(server.url + "/graphql", headers={"origin": origin, **PREFLIGHT})
    cors = preflight.headers.get("access-control-allow-origin") == origin
    try:
        async with connect(server.ws_url, subprotocols=[PROTOCOL], origin=origin, open_timeout=TIMEOUT):  # type: ignore[list-item,arg-type]
            socket = True
    except InvalidStatus as refused:
        assert refused.response.status_code == 403
        socket = False
    assert preflight.status_code == (200 if cors else 400)
    return cors, socket


@pytest.mark.parametrize("field", ["allowed_origins", "cors_origins"])
async def test_one_list_drives_cors_and_the_websocket_origin_check(settings: Settings, field: str) -> None:
    async with serve(dataclasses.replace(settings, **{field: (APP,)})) as server:
        assert await browser_reach(server, APP) == (True, True)
        assert await browser_reach(server, EVIL) == (False, False)


async def test_no_list_lets_no_other_origin_in(live: LiveServer) -> None:
    assert await browser_reach(live, APP) == (False, False)


async def test_a_server_started_with_the_old_name_warns_once_and_uses_it(
    settings: Settings, tmp_path: Path
) -> None:
    log = tmp_path / "server.log"
    with worker_process(settings, env={"PULSEBOARD_CORS_ORIGINS": APP}, log=log) as server:
        assert await browser_reach(server, APP) == (True, True)
        assert await browser_reach(server, EVIL) == (False, False)
    lines = [line for line in log.read_text().splitlines() if "PULSEBOARD_CORS_ORIGINS" in line]
    assert len(lines) == 1, log.read_text()
    assert "PULSEBOARD_ALLOWED_ORIGINS" in lines[0]
