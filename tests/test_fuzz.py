"""Fuzzing graphql-transport-ws over real sockets: at least 10 000 malformed or out-of-order frames
from many concurrent clients. Every bad frame must get its PROTOCOL.md close code, well-behaved
clients must keep being served meanwhile, and nothing may be left behind once the sockets close.

The frames come from random.Random(seed): PULSEBOARD_FUZZ_SEED=<n> replays a run, and every
failure message names the seed and the script (category, frames) that failed.

The server bugs this fuzzer found (crashes on hostile JSON and lone surrogates, leaks when a
subscription is cancelled while its topic starts, uncoded errors) are the focused tests at the
end, each a minimal reproduction."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import string
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from pulseboard.app import GraphQLApp
from pulseboard.models import Role
from pulseboard.subscriptions.protocol import ProtocolHandler
from tests.live import WS, LiveServer, ws

SEED = int(os.environ.get("PULSEBOARD_FUZZ_SEED", "20240611"))
REPLAY = f"PULSEBOARD_FUZZ_SEED={SEED}"

MIN_FRAMES = 10_000
CONCURRENCY = 50  # fuzzing sockets open at once
USERS = 64  # fuzzing users, so no one user reaches the per-user socket limit
# A fuzzing socket's own answers (connection_ack, the close frame, pongs) are late when the loop is
# saturated, all the more on a busy machine; these bound them generously.
FUZZER_WITHIN = 30.0
SCRIPT_WITHIN = 90.0  # one fuzzing socket's whole script
CLOSE_WITHIN = 10.0  # a hostile frame's close frame (test_hostile_*)
YIELD_EVERY = 4  # frames a fuzzing socket sends before it lets the event loop run others
# The well-behaved client, while the fuzzers keep the (shared, single) event loop saturated:
PONG_WITHIN = 2.0  # a pong
EVENT_WITHIN = 5.0  # three events, once their mutations have answered
CONNECT_WITHIN = 15.0  # a fresh socket: handshake, connection_ack (a database read), first answer
# A mutation over HTTP queues for the database behind the fuzzers' work (SQLite: one connection
# behind one lock, each query a thread round trip): seconds, not milliseconds, while they run.
MUTATION_WITHIN = 30.0
MAX_RSS_GROWTH = 100 * 2**20

PROJECT = "mutation($n: String!) { createProject(input: {name: $n}) { id } }"
CREATE_TASK = "mutation($p: ID!, $t: String!) { createTask(input: {projectId: $p, title: $t}) { id } }"
TASK_EVENTS = "subscription($p: ID!) { taskEvents(projectId: $p) { type task { title } } }"
METRICS = "subscription($q: ID!) { queueMetrics(queueId: $q) { open } }"
VIEWER = "{ viewer { id } }"
KNOWN_TYPES = ("connection_init", "ping", "pong", "subscribe", "complete")
DOCUMENT_ERRORS = {"GRAPHQL_PARSE_FAILED", "GRAPHQL_VALIDATION_FAILED"}

# Characters for random text. Lone surrogates are valid in JSON strings (as \u escapes) but not in
# UTF-8; only low ones, so that no two of them make a pair.
ALPHABETS = (
    string.ascii_letters + string.digits,
    string.punctuation + " ",
    "".join(map(chr, range(0x20))) + "\x7f",
    "".join(map(chr, range(0xA0, 0x250))),
    "".join(map(chr, range(0x4E00, 0x4E80))),
    "".join(map(chr, range(0x1F600, 0x1F650))),
    "\u200b\u200e\u2028\u2029\ufeff\ufffd\uffff",
    "".join(map(chr, range(0xDC00, 0xDC10))) + "\udfff",
)


class InvalidUtf8(bytes):
    """Sent as a *text* frame, although it is not UTF-8."""


Frame = str | bytes


@dataclass
class Script:
    """One fuzzing socket: what it sends and what it must get back."""

    category: str
    init: bool  # connection_init with a valid token first
    frames: list[Frame] = field(default_factory=list)
    close: int | None = None  # the close code the last frame must get; None: the socket stays open
    pings: int = 0  # pongs owed
    may: dict[str, set[str]] = field(default_factory=dict)  # message types an operation id may get
    must: dict[str, list[str]] = field(default_factory=dict)  # ... and must get (open sockets)

    def describe(self, last: int = 4) -> str:
        shown = " | ".join(_short(f) for f in self.frames[-last:])
        more = f"{len(self.frames) - last} frames, then " if len(self.frames) > last else ""
        return f"{self.category}, init={self.init}, expects {self.close or 'open'}: {more}{shown}"


def _short(frame: Frame, limit: int = 160) -> str:
    text = repr(frame)
    return text if len(text) <= limit else f"{text[:limit]}...({len(frame)} chars)"


def dump(rng: random.Random, message: Any) -> str:
    text = json.dumps(message, ensure_ascii=rng.random() < 0.5)
    return text if utf8(text) else json.dumps(message)  # lone surrogates travel as \u escapes


def utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def not_json(text: str) -> bool:
    """Whether the server's json.loads rejects `text` as JSON (and nothing worse)."""
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return True
    except (ValueError, RecursionError):
        return False  # deep_json and huge_number territory
    return False


@dataclass(frozen=True)
class Setup:
    tokens: list[str]  # admins, so they may watch the quiet project and the queue
    quiet: str  # a project nobody changes: fuzzed taskEvents subscriptions stay silent
    queue: str  # a queue whose metrics fuzzed subscriptions watch
    watcher: str  # the well-behaved client's token
    watched: str  # the project the well-behaved client follows


class Fuzzer:
    """Scripts from a seed: the same seed and settings give the same scripts."""

    def __init__(self, seed: int, setup: Setup, max_frame: int) -> None:
        self.rng = random.Random(seed)
        self.setup = setup
        self.max_frame = max_frame
        self._serial = itertools.count()

    # -- values ---------------------------------------------------------------------------------

    def text(self, low: int = 0, high: int = 24) -> str:
        rng = self.rng
        alphabet = rng.choice(ALPHABETS) if rng.random() < 0.7 else "".join(ALPHABETS)
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(low, high)))

    def ident(self) -> str:
        """A fresh valid operation id: short, unicode, control characters or long."""
        rng, n = self.rng, next(self._serial)
        r = rng.random()
        if r < 0.6:
            base = rng.choice(("", "op", "sub-", "1", "x" * 3))
        elif r < 0.9:
            base = self.text(1, 12)
        else:
            base = rng.choice(string.ascii_letters) * rng.randint(200, 3000)
        return f"{base}#{n}"

    def junk(self, *exclude: str, depth: int = 0) -> Any:
        """A JSON value of a random kind other than `exclude`."""
        kinds = [
            k
            for k in (
                "null",
                "bool",
                "int",
                "bigint",
                "float",
                "special",
                "string",
                "empty",
                "list",
                "object",
            )
            if k not in exclude
        ]
        if depth > 2:
            kinds = [k for k in kinds if k not in ("list", "object")] or kinds
        kind, rng = self.rng.choice(kinds), self.rng
        if kind == "null":
            return None
        if kind == "bool":
            return rng.random() < 0.5
        if kind == "int":
            return rng.randint(-(2**63), 2**63)
        if kind == "bigint":  # below Python's 4300-digit limit (above it: huge_number)
            return int("9" * rng.randint(20, 4000))
        if kind == "float":
            return rng.choice((0.0, -0.0, 1e-320, 1.7e308, rng.uniform(-1e6, 1e6)))
        if kind == "special":
            return rng.choice((float("inf"), float("-inf"), float("nan")))
        if kind == "string":
            return self.text(1, 30)
        if kind == "empty":
            return ""
        if kind == "list":
            return [self.junk(depth=depth + 1) for _ in range(rng.randint(0, 3))]
        return {self.text(0, 8): self.junk(depth=depth + 1) for _ in range(rng.randint(0, 3))}

    def nested(self, depth: int) -> Any:
        value: Any = self.junk("list", "object")
        for _ in range(depth):
            value = [value] if self.rng.random() < 0.5 else {self.text(0, 3): value}
        return value

    # -- valid frames ---------------------------------------------------------------------------

    def ping(self, s: Script, kind: str = "ping") -> None:
        message: dict[str, Any] = {"type": kind}
        r = self.rng.random()
        if r < 0.3:
            message["payload"] = None
        elif r < 0.6:
            message["payload"] = {self.text(1, 8): self.junk()}
        elif r < 0.65:
            message["extra"] = self.junk()  # unknown fields are ignored
        s.frames.append(dump(self.rng, message))
        s.pings += kind == "ping"

    def subscribe(self, s: Script, ident: str, query: str, **extra: Any) -> None:
        payload: dict[str, Any] = {"query": query, **extra}
        for key in ("variables", "operationName", "extensions"):
            if key not in payload and self.rng.random() < 0.2:
                payload[key] = None
        s.frames.append(dump(self.rng, {"id": ident, "type": "subscribe", "payload": payload}))

    def quiet(self, s: Script, ident: str) -> None:
        """A subscription that stays active and silent until completed."""
        self.subscribe(s, ident, TASK_EVENTS, variables={"p": self.setup.quiet})
        s.may.setdefault(ident, set())

    def metrics(self, s: Script, ident: str) -> None:
        """A subscription that stays active; it may send a snapshot."""
        self.subscribe(s, ident, METRICS, variables={"q": self.setup.queue})
        s.may.setdefault(ident, set()).add("next")

    def query(self, s: Script, ident: str | None = None, must: bool = False, **extra: Any) -> None:
        ident = ident or self.ident()
        self.subscribe(s, ident, VIEWER, **extra)
        s.may[ident] = {"next", "complete"}
        if must:
            s.must[ident] = ["next", "complete"]

    def broken_document(self, s: Script, must: bool = False) -> None:
        """A well-formed subscribe whose document does not parse or validate: an `error`."""
        rng, ident = self.rng, self.ident()
        depth = rng.randint(13, 3000)
        extra: dict[str, Any] = {}
        query = rng.choice(
            (
                "subscription { taskEvents(projectId: 1 {",
                "{ nothingHere }",
                " \n\t",
                "{" * depth + "}" * depth,
                "{ viewer " * depth + "{ id }" + " }" * depth,
                "{ " + " ".join(f"a{i}: viewer {{ id }}" for i in range(rng.randint(31, 200))) + " }",
                "query " + self.text(1, 40).replace("{", "") + " !",
            )
        )
        if rng.random() < 0.15:
            query, extra = "query A { viewer { id } }", {"operationName": "B"}
        self.subscribe(s, ident, query, **extra)
        s.may[ident] = {"error"}
        if must:
            s.must[ident] = ["error"]

    def complete(self, s: Script, ident: str) -> None:
        s.frames.append(dump(self.rng, {"id": ident, "type": "complete"}))

    def prelude(self, s: Script, count: int) -> None:
        """Valid frames, in any order the protocol allows."""
        rng = self.rng
        for _ in range(count):
            r = rng.random()
            if r < 0.35:
                self.ping(s)
            elif r < 0.45:
                self.ping(s, "pong")  # unsolicited pongs are allowed and ignored
            elif r < 0.55 or not s.init:
                self.complete(s, self.ident())  # nothing to complete: ignored
            elif r < 0.7:
                ident = self.ident()
                self.quiet(s, ident)
                if rng.random() < 0.5:
                    self.complete(s, ident)
            elif r < 0.8:
                self.query(s)
            elif r < 0.9:
                self.broken_document(s)
            else:
                self.metrics(s, self.ident())

    # -- bad frames: (frame, the close code it must get) ----------------------------------------

    def valid_message(self) -> dict[str, Any]:
        return self.rng.choice(
            (
                {"type": "ping"},
                {"type": "pong"},
                {"type": "connection_init", "payload": {}},
                {"type": "complete", "id": "1"},
                {"type": "subscribe", "id": "1", "payload": {"query": VIEWER}},
            )
        )

    def binary(self) -> tuple[Frame, int]:
        r = self.rng.random()
        if r < 0.5:
            return self.rng.randbytes(self.rng.randint(1, 512)), 4400
        if r < 0.9:
            return dump(self.rng, self.valid_message()).encode(), 4400
        return b"", 4400

    def garbage_text(self) -> tuple[Frame, int]:
        while True:
            text = self._garbage(dump(self.rng, self.valid_message()))
            if not_json(text) and utf8(text):
                return text, 4400

    def _garbage(self, valid: str) -> str:
        rng, kind = self.rng, self.rng.randrange(11)
        if kind == 0:
            return valid[: rng.randint(1, len(valid) - 1)]  # truncated
        if kind == 1:
            return valid + rng.choice((" x", "}", ",", valid, "\x00"))  # trailing data
        if kind == 2:
            return self.text(1, 60)
        if kind == 3:
            return valid.replace('"', "'")
        if kind == 4:
            return valid[:-1] + ",}"
        if kind == 5:
            return "/* c */ " + valid
        if kind == 6:
            return "\ufeff" + valid
        if kind == 7:
            return "{type: 'ping'}"
        if kind == 8:
            return rng.choice(("undefined", "ping", "True", "None", "{", "[", '"', "'x'", "01"))
        if kind == 9:
            return rng.choice(("", " ", "\n", "\t\r\n "))
        return "".join(map(chr, rng.randbytes(rng.randint(1, 80))))

    def non_object(self) -> tuple[Frame, int]:
        value = self.junk("object")
        if self.rng.random() < 0.2:
            value = json.dumps(self.valid_message())  # a message encoded twice
        elif self.rng.random() < 0.2:
            value = [self.valid_message()]  # a batch
        return dump(self.rng, value), 4400

    def deep_json(self) -> tuple[Frame, int]:
        """Nesting deeper than json.loads recurses: malformed for the server."""
        rng = self.rng
        depth = rng.randint(2000, max(2000, min(20_000, self.max_frame // 8)))
        opening, closing = rng.choice((("[", "]"), ('{"a":', "}"), ('[{"b":', "}]")))
        deep = opening * depth + "1" + closing * depth
        return rng.choice(
            (
                deep,
                '{"type":"ping","payload":{"deep":' + deep + "}}",
                '{"id":"1","type":"subscribe","payload":{"query":"{ viewer { id } }","variables":{"v":'
                + deep
                + "}}}",
                '{"id":"1","type":"subscribe","payload":{"query":"{ viewer { id } }","extensions":'
                + deep
                + "}}",
                '{"type":"connection_init","payload":' + deep + "}",
            )
        ), 4400

    def huge_number(self) -> tuple[Frame, int]:
        """An integer longer than Python converts (4300 digits): malformed for the server."""
        rng = self.rng
        number = rng.choice(("", "-")) + "9" * rng.randint(4301, 50_000)
        return rng.choice(
            (
                number,
                f"[{number}]",
                '{"type":"ping","payload":{"n":' + number + "}}",
                '{"id":' + number + ',"type":"subscribe","payload":{"query":"{ viewer { id } }"}}',
                '{"id":"1","type":"subscribe","payload":{"query":"{ viewer { id } }","variables":{"v":'
                + number
                + "}}}",
                '{"type":' + number + "}",
            )
        ), 4400

    def bad_type(self) -> tuple[Frame, int]:
        message = self.valid_message()
        if self.rng.random() < 0.3:
            del message["type"]
        else:
            message["type"] = self.junk("string", "empty")
        return dump(self.rng, message), 4400

    def unknown_type(self) -> tuple[Frame, int]:
        rng = self.rng
        kind = rng.choice(
            (
                rng.choice(("connection_ack", "next", "error")),  # the server's own
                rng.choice(("start", "stop", "data", "ka", "connection_terminate")),  # the legacy protocol's
                rng.choice(KNOWN_TYPES).upper(),
                rng.choice(KNOWN_TYPES).title(),
                " " + rng.choice(KNOWN_TYPES),
                rng.choice(KNOWN_TYPES) + rng.choice((" ", "\x00", "\n", "s")),
                "",
                self.text(1, 40),
                rng.choice(string.ascii_letters) * rng.randint(1000, min(100_000, self.max_frame // 4)),
            )
        )
        if kind in KNOWN_TYPES:
            kind += "?"
        message = {**self.valid_message(), "type": kind}
        return dump(rng, message), 4400

    def bad_subscribe(self) -> tuple[Frame, int]:
        rng = self.rng
        message: dict[str, Any] = {"id": self.ident(), "type": "subscribe", "payload": {"query": VIEWER}}
        where = rng.choice(("id", "payload", "query", "variables", "operationName", "extensions"))
        if where == "id":
            if rng.random() < 0.2:
                del message["id"]
            else:
                message["id"] = self.junk("string")
        elif where == "payload":
            if rng.random() < 0.2:
                del message["payload"]
            else:
                message["payload"] = self.junk("object")
        elif where == "query":
            if rng.random() < 0.2:
                del message["payload"]["query"]
            else:
                message["payload"]["query"] = self.junk("string", "empty")
        elif where == "operationName":
            message["payload"][where] = self.junk("null", "string", "empty")
        else:
            message["payload"][where] = self.junk("null", "object")
        return dump(rng, message), 4400

    def bad_complete(self) -> tuple[Frame, int]:
        message: dict[str, Any] = {"type": "complete", "id": self.junk("string")}
        if self.rng.random() < 0.2:
            del message["id"]
        return dump(self.rng, message), 4400

    def bad_payload(self) -> tuple[Frame, int]:
        kind = self.rng.choice(("ping", "pong", "connection_init"))
        return dump(self.rng, {"type": kind, "payload": self.junk("null", "object")}), 4400

    def invalid_utf8(self) -> tuple[Frame, int]:
        bad = self.rng.choice((b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xc0\xaf", b"\xe2\x82", b"\xf8\x88"))
        valid = dump(self.rng, self.valid_message()).encode()
        cut = self.rng.randint(0, len(valid))
        return InvalidUtf8(valid[:cut] + bad + valid[cut:]), 1007  # RFC 6455: not UTF-8

    def too_big(self) -> tuple[Frame, int]:
        pad = "x" * (self.max_frame + self.rng.randint(1, 4096))
        return json.dumps({"type": "ping", "payload": {"pad": pad}}), 1009  # RFC 6455: too big

    def bad_token(self) -> tuple[Frame, int]:
        rng = self.rng
        valid = self.setup.tokens[0]
        header = rng.choice(
            (
                self.junk("null", "string", "empty"),
                self.text(0, 40),
                "Bearer " + self.text(1, 40),
                "Bearer " + valid[:-3] + ("abc" if not valid.endswith("abc") else "xyz"),  # bad signature
                "Bearer " + valid.replace(".", "", 1),
                "Bearer",
                "Bearer   ",
                valid,  # no scheme
                "Basic " + valid,
                "Bearer " + valid + " " + valid,
                "Bearer \udc80" + valid,
            )
        )
        return dump(rng, {"type": "connection_init", "payload": {"authorization": header}}), 4403

    def subscribe_unacknowledged(self) -> tuple[Frame, int]:
        s = Script("", init=False)
        rng = self.rng
        rng.choice(
            (
                lambda: self.query(s),
                lambda: self.quiet(s, self.ident()),
                lambda: self.broken_document(s),
                lambda: self.metrics(s, self.ident()),
            )
        )()
        return s.frames[-1], 4401

    def second_init(self) -> tuple[Frame, int]:
        rng = self.rng
        message: dict[str, Any] = {"type": "connection_init"}
        payload = rng.choice(
            (None, {}, {"authorization": f"Bearer {self.setup.tokens[1]}"}, {"authorization": "Bearer no"})
        )
        if payload is not None or rng.random() < 0.5:
            message["payload"] = payload
        return dump(rng, message), 4429

    MALFORMED: tuple[str, ...] = (
        "binary",
        "garbage_text",
        "non_object",
        "deep_json",
        "huge_number",
        "bad_type",
        "unknown_type",
        "bad_subscribe",
        "bad_complete",
        "bad_payload",
    )

    # -- scripts --------------------------------------------------------------------------------

    def closing(self, category: str, maker: Callable[[], tuple[Frame, int]], init: bool | None) -> Script:
        """A few valid frames, a ping (its pong proves they were all accepted), one bad frame."""
        s = Script(category, init=self.rng.random() < 0.5 if init is None else init)
        self.prelude(s, self.rng.randint(0, 6))
        self.ping(s)
        frame, s.close = maker()
        s.frames.append(frame)
        return s

    def duplicate(self) -> Script:
        s = Script("duplicate_id", init=True)
        ident = self.ident() if self.rng.random() < 0.8 else "x" * self.rng.randint(124, 10_000)
        (self.quiet if self.rng.random() < 0.8 else self.metrics)(s, ident)
        self.prelude(s, self.rng.randint(0, 5))
        self.ping(s)
        again = Script("", init=True)  # any well-formed subscribe with that id
        self.rng.choice((self.query, lambda x, ident: self.quiet(x, ident)))(again, ident)
        s.frames.append(again.frames[-1])
        s.close = 4409
        return s

    def odd_but_valid(self) -> Script:
        """Unusual but valid: the socket stays open and answers each operation."""
        rng, s = self.rng, Script("odd_but_valid", init=True)
        self.prelude(s, rng.randint(0, 3))
        kind = rng.randrange(8)
        if kind == 0:  # a huge id: the protocol sets no limit below the frame size
            size = rng.randint(1000, self.max_frame // 2)
            self.query(s, rng.choice(string.ascii_letters) * size, must=True)
        elif kind == 1:  # unicode and control characters in ids
            self.query(s, self.text(1, 40) + "\x00\x1f\u2028\U0001f600", must=True)
        elif kind == 2:  # deep, but well within what JSON parsers take
            where, ident = rng.choice(("variables", "extensions")), self.ident()
            self.subscribe(s, ident, VIEWER, **{where: {"deep": self.nested(rng.randint(20, 250))}})
            s.may[ident], s.must[ident] = {"next", "complete"}, ["next", "complete"]
        elif kind == 3:
            message = {"type": "ping", "payload": {"deep": self.nested(rng.randint(20, 250))}}
            s.frames.append(dump(rng, message))
            s.pings += 1
        elif kind == 4:
            self.broken_document(s, must=True)
        elif kind == 5:  # an id is free again once completed
            ident = self.ident()
            for _ in range(rng.randint(2, 10)):
                self.quiet(s, ident)
                self.complete(s, ident)
        elif kind == 6:  # completing what does not exist, twice
            for _ in range(rng.randint(1, 10)):
                ident = self.ident()
                self.complete(s, ident)
                self.complete(s, ident)
        else:  # the operation named
            ident = self.ident()
            query = "query A { viewer { email } } query B { viewer { id } }"
            self.subscribe(s, ident, query, operationName="B")
            s.may[ident], s.must[ident] = {"next", "complete"}, ["next", "complete"]
        self.ping(s)
        return s

    def interleaved(self, length: int) -> Script:
        """Thousands of subscribe/complete/ping frames in a valid order the client chooses."""
        rng, s = self.rng, Script("interleaved", init=True)
        quiet_ids = [f"s{i}" for i in range(12)] + [self.ident() for _ in range(4)]
        metric_ids = [f"m{i}" for i in range(3)]
        active: set[str] = set()
        one_shots = 0  # queries and broken documents; with `active`, under the per-socket limit
        while len(s.frames) < length:
            r = rng.random()
            free = [i for i in quiet_ids + metric_ids if i not in active]
            if r >= 0.85 and one_shots >= 70:
                r = 0.7
            if r < 0.3 and free:
                ident = rng.choice(free)
                (self.metrics if ident in metric_ids else self.quiet)(s, ident)
                active.add(ident)
            elif r < 0.55 and active:
                ident = rng.choice(sorted(active))
                self.complete(s, ident)
                active.discard(ident)
            elif r < 0.62:
                self.complete(s, rng.choice(free) if free else self.ident())
            elif r < 0.8:
                self.ping(s)
            elif r < 0.85:
                self.ping(s, "pong")
            elif r < 0.93:
                self.query(s)
                one_shots += 1
            else:
                self.broken_document(s)
                one_shots += 1
        ending = rng.random()
        if ending < 0.4:
            self.ping(s)  # stays open
        else:
            self.ping(s)
            if ending < 0.6 and active:
                again = {"id": sorted(active)[0], "type": "subscribe", "payload": {"query": VIEWER}}
                s.frames.append(dump(rng, again))
                s.close = 4409
            elif ending < 0.8:
                s.frames.append(self.second_init()[0])
                s.close = 4429
            else:
                frame, s.close = getattr(self, rng.choice(self.MALFORMED))()
                s.frames.append(frame)
        return s

    def scripts(self) -> list[Script]:
        plan: list[tuple[int, Callable[[], Script]]] = [
            (45, lambda: self.closing("binary", self.binary, None)),
            (70, lambda: self.closing("not_json", self.garbage_text, None)),
            (45, lambda: self.closing("non_object", self.non_object, None)),
            (30, lambda: self.closing("deep_json", self.deep_json, None)),
            (30, lambda: self.closing("huge_number", self.huge_number, None)),
            (45, lambda: self.closing("bad_type", self.bad_type, None)),
            (55, lambda: self.closing("unknown_type", self.unknown_type, None)),
            (90, lambda: self.closing("bad_subscribe", self.bad_subscribe, None)),
            (30, lambda: self.closing("bad_complete", self.bad_complete, None)),
            (45, lambda: self.closing("bad_payload", self.bad_payload, None)),
            (15, lambda: self.closing("invalid_utf8", self.invalid_utf8, None)),
            (3, lambda: self.closing("too_big", self.too_big, None)),
            (45, lambda: self.closing("bad_token", self.bad_token, False)),
            (45, lambda: self.closing("subscribe_before_ack", self.subscribe_unacknowledged, False)),
            (45, lambda: self.closing("second_init", self.second_init, True)),
            (55, self.duplicate),
            (60, self.odd_but_valid),
            (8, lambda: self.interleaved(self.rng.randint(900, 1300))),
        ]
        scripts = [make() for count, make in plan for _ in range(count)]
        self.rng.shuffle(scripts)
        return scripts


# -- playing scripts ----------------------------------------------------------------------------


@dataclass
class Tally:
    frames: int = 0
    observed: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    failures: list[str] = field(default_factory=list)

    def summary(self) -> str:
        codes = {category: dict(sorted(seen.items())) for category, seen in sorted(self.observed.items())}
        return f"{REPLAY}: {self.frames} frames, close codes per category {codes}"


async def send(conn: ClientConnection, frame: Frame) -> None:
    if isinstance(frame, InvalidUtf8):
        await conn.send(bytes(frame), text=True)
    else:
        await conn.send(frame)


def _code(message: dict[str, Any]) -> object:
    errors = message.get("payload") or [{}]
    return (errors[0].get("extensions") or {}).get("code")


async def play(
    live: LiveServer, script: Script, token: str, tally: Tally, phase: list[str]
) -> tuple[str, list[str]]:
    """Runs one script on its own socket; what happened ("open", the close code, "abort"), and
    what was wrong. `phase` says how far it got."""
    problems: list[str] = []
    got: dict[str, list[str]] = defaultdict(list)
    pongs = 0
    answered = asyncio.Event()

    def settled() -> bool:
        return pongs >= script.pings and all(
            Counter(got.get(ident, [])) >= Counter(kinds) for ident, kinds in script.must.items()
        )

    def on_message(raw: str | bytes) -> None:
        nonlocal pongs
        if isinstance(raw, bytes):
            problems.append(f"a binary message from the server: {_short(raw)}")
            return
        message = json.loads(raw)
        kind, ident = message.get("type"), message.get("id")
        if kind == "pong":
            pongs += 1
            if pongs > script.pings:
                problems.append("more pongs than pings")
        elif kind not in script.may.get(ident, ()):
            problems.append(f"unexpected message {_short(raw, 600)}")
        else:
            got[ident].append(kind)
            if kind == "next" and message["payload"].get("errors"):
                problems.append(f"errors in {_short(raw)}")
            if kind == "error" and _code(message) not in DOCUMENT_ERRORS:
                problems.append(f"unexpected error {_short(raw, 600)}")
        if settled():
            answered.set()

    phase.append("connecting")
    async with ws(live, max_size=None) as client:
        conn = client.conn
        if script.init:
            phase.append("waiting for connection_ack")
            await client.send({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
            tally.frames += 1
            assert await client.receive(within=FUZZER_WITHIN) == {"type": "connection_ack"}
        phase.append("sending")

        async def read() -> ConnectionClosed:
            while True:
                try:
                    raw = await conn.recv()
                except ConnectionClosed as closed:
                    return closed
                on_message(raw)

        reader = asyncio.create_task(read())
        try:
            for number, frame in enumerate(script.frames, 1):
                try:
                    await send(conn, frame)
                except ConnectionClosed as early:
                    if number < len(script.frames):  # closed by the last frame while it was sent: fine
                        problems.append(f"closed ({early.rcvd}) before frame {number} was sent")
                        break
                tally.frames += 1
                if number % YIELD_EVERY == 0:  # a send need not suspend: let the others run
                    await asyncio.sleep(0)
            phase.append("waiting for answers" if script.close is None else "waiting for the close")
            if script.close is None:
                try:
                    await asyncio.wait_for(answered.wait(), FUZZER_WITHIN)
                except TimeoutError:
                    problems.append(f"{pongs} of {script.pings} pongs; answers {dict(got)}")
                if reader.done():
                    rcvd = reader.result().rcvd
                    problems.append(f"closed the socket: {rcvd}")
                    return (str(rcvd.code) if rcvd else "abort"), problems
                return "open", problems
            try:
                closed = await asyncio.wait_for(asyncio.shield(reader), FUZZER_WITHIN)
            except TimeoutError:
                problems.append(f"not closed within {FUZZER_WITHIN} s")
                return "timeout", problems
            if closed.rcvd is None:
                problems.append("closed without a close frame (the server's handler crashed)")
                return "abort", problems
            code, reason = closed.rcvd.code, closed.rcvd.reason
            if code != script.close:
                problems.append(f"closed {code} {reason!r}, not {script.close}")
            if code >= 4000 and not 0 < len(reason.encode()) <= 123:
                problems.append(f"close reason {reason!r}")
            if pongs != script.pings and code >= 4000:  # 1007 and 1009 fail the socket at once
                problems.append(f"{pongs} of {script.pings} pongs before the close")
            return str(code), problems
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)


async def fuzz(live: LiveServer, setup: Setup, scripts: list[Script], tally: Tally) -> None:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(index: int, script: Script) -> None:
        async with gate:
            token, phase = setup.tokens[index % len(setup.tokens)], ["starting"]
            try:
                outcome, problems = await asyncio.wait_for(
                    play(live, script, token, tally, phase), SCRIPT_WITHIN
                )
            except Exception as error:
                outcome, problems = "error", [f"{type(error).__name__} {error} while {phase[-1]}"]
            tally.observed[script.category][outcome] += 1
            if problems:
                tally.failures.append(f"script {index} ({script.describe()}): {'; '.join(problems)}")

    await asyncio.gather(*(one(index, script) for index, script in enumerate(scripts)))


# -- the world around the fuzzers ---------------------------------------------------------------


async def until(predicate: Callable[[], object], within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return bool(predicate())


async def prepare(live: LiveServer, users: int = USERS) -> Setup:
    tokens = [live.token(f"fuzz{n}@example.test", Role.ADMIN) for n in range(users)]
    for token in tokens:  # known users before the fuzzing starts
        await live.gql(token, VIEWER)
    admin = tokens[0]
    quiet = (await live.gql(admin, PROJECT, n="quiet"))["createProject"]["id"]
    team = (await live.gql(admin, 'mutation { createTeam(input: {name: "fuzz"}) { id } }'))["createTeam"]
    queue_input = {
        "teamId": team["id"],
        "name": "fuzz",
        "slaFirstResponseMinutes": 60,
        "slaResolutionMinutes": 240,
    }
    queue = await live.gql(
        admin, "mutation($i: CreateQueueInput!) { createQueue(input: $i) { id } }", i=queue_input
    )
    watcher = live.token("watcher@example.test")
    watched = (await live.gql(watcher, PROJECT, n="watched"))["createProject"]["id"]
    return Setup(tokens, quiet, queue["createQueue"]["id"], watcher, watched)


@dataclass
class Health:
    events: int = 0
    pongs: int = 0
    fresh_sockets: int = 0
    worst_mutation: float = 0.0
    worst_event: float = 0.0
    worst_pong: float = 0.0
    worst_fresh_socket: float = 0.0

    def __str__(self) -> str:
        return (
            f"{self.events} events in order (worst {self.worst_event:.2f} s after their mutations, which"
            f" took up to {self.worst_mutation:.2f} s each), {self.pongs} pongs (worst"
            f" {self.worst_pong:.2f} s), {self.fresh_sockets} fresh sockets"
            f" (worst {self.worst_fresh_socket:.2f} s)"
        )


@asynccontextmanager
async def within(seconds: float, what: str) -> AsyncIterator[None]:
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        raise AssertionError(f"{REPLAY}: {what} took over {seconds} s while fuzzing") from None


async def create_task(http: httpx.AsyncClient, live: LiveServer, setup: Setup, title: str) -> None:
    response = await http.post(
        live.url + "/graphql",
        json={"query": CREATE_TASK, "variables": {"p": setup.watched, "t": title}},
        headers={"authorization": f"Bearer {setup.watcher}"},
    )
    assert not response.json().get("errors"), response.text


async def follow(live: LiveServer, setup: Setup, stack: AsyncExitStack) -> WS:
    """The well-behaved client, subscribed and shown to receive events."""
    client = await stack.enter_async_context(ws(live, setup.watcher))
    topics = len(live.hub.topics)
    await client.subscribe("w", TASK_EVENTS, p=setup.watched)
    assert await until(lambda: len(live.hub.topics) > topics)
    await asyncio.sleep(0.2)  # the stream reads the topic's head right after it listens
    await live.gql(setup.watcher, CREATE_TASK, p=setup.watched, t="warm-up")
    assert (await client.next("w"))["taskEvents"] == {"type": "CREATED", "task": {"title": "warm-up"}}
    return client


async def well_behaved(
    live: LiveServer, setup: Setup, client: WS, stop: asyncio.Event, health: Health
) -> None:
    """Until `stop`, on one socket: tasks created over HTTP arrive as events, in order; on
    another: pings get pongs within PONG_WITHIN, and fresh sockets are answered within
    CONNECT_WITHIN."""

    async def events() -> None:
        async with httpx.AsyncClient(timeout=MUTATION_WITHIN) as http:
            while not stop.is_set():
                titles = [f"event {health.events + n}" for n in range(3)]
                for title in titles:
                    started = time.monotonic()
                    await create_task(http, live, setup, title)
                    health.worst_mutation = max(health.worst_mutation, time.monotonic() - started)
                started = time.monotonic()
                async with within(EVENT_WITHIN, "events after their mutations"):
                    for title in titles:
                        event = (await client.next("w"))["taskEvents"]
                        assert event == {"type": "CREATED", "task": {"title": title}}, f"{REPLAY}: {event}"
                        health.events += 1
                health.worst_event = max(health.worst_event, time.monotonic() - started)

    async def pings() -> None:
        async with ws(live, setup.watcher) as pinged:
            for round_ in itertools.count():
                if stop.is_set():
                    return
                started = time.monotonic()
                async with within(PONG_WITHIN, "a pong"):
                    await pinged.send({"type": "ping"})
                    assert await pinged.receive() == {"type": "pong"}
                health.pongs += 1
                health.worst_pong = max(health.worst_pong, time.monotonic() - started)
                if round_ % 10 == 0:
                    started = time.monotonic()
                    async with within(CONNECT_WITHIN, "a fresh socket"), ws(live, setup.watcher) as fresh:
                        await fresh.subscribe("v", "{ viewer { email } }")
                        assert await fresh.next("v") == {"viewer": {"email": "watcher@example.test"}}
                    health.fresh_sockets += 1
                    health.worst_fresh_socket = max(health.worst_fresh_socket, time.monotonic() - started)
                await asyncio.sleep(0.1)

    await asyncio.gather(events(), pings())


def _graphql_app(live: LiveServer) -> GraphQLApp:
    assert live.app is not None
    endpoints = {getattr(route, "endpoint", None) for route in live.app.routes}
    (app,) = {endpoint for endpoint in endpoints if isinstance(endpoint, GraphQLApp)}
    return app


def leftovers(live: LiveServer, tasks_before: set[asyncio.Task[Any]]) -> dict[str, object]:
    """What the sockets left behind: hub topics, watched queues, tasks, open sockets."""
    left: dict[str, object] = {}
    if live.hub.topics:
        left["hub topics"] = live.hub.topics
    if live.hub.metrics.watched:
        left["watched queues"] = live.hub.metrics.watched
    tasks = [t for t in asyncio.all_tasks() - tasks_before if not t.done()]
    if tasks:
        left["tasks"] = [*sorted(str(t.get_coro()) for t in tasks)[:10], f"({len(tasks)} in all)"]
    if ProtocolHandler.open:
        left["open socket handlers"] = len(ProtocolHandler.open)
    if _graphql_app(live).connections.total:
        left["counted connections (per-user limit)"] = _graphql_app(live).connections.total
    return left


def rss() -> int:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def max_frame(live: LiveServer) -> int:
    return live.settings.max_ws_message_bytes


# -- the fuzz run -------------------------------------------------------------------------------


async def test_fuzzed_frames_get_their_close_codes_while_others_are_served(live: LiveServer) -> None:
    setup = await prepare(live)
    scripts = Fuzzer(SEED, setup, max_frame(live)).scripts()
    tally, health = Tally(), Health()
    tasks_before, rss_before = set(asyncio.all_tasks()), rss()
    started = time.monotonic()
    async with AsyncExitStack() as stack:
        client = await follow(live, setup, stack)
        stop = asyncio.Event()
        watching = asyncio.create_task(well_behaved(live, setup, client, stop, health))
        try:
            await fuzz(live, setup, scripts, tally)
        finally:
            stop.set()
            (served,) = await asyncio.gather(watching, return_exceptions=True)
    elapsed = time.monotonic() - started
    del scripts  # before measuring memory
    report = f"{tally.summary()}; well-behaved client: {health}; {elapsed:.1f} s"
    print(report)

    if isinstance(served, BaseException):
        raise AssertionError(f"{report}\nthe well-behaved client: {served!r}") from served
    assert not tally.failures, f"{report}\n{len(tally.failures)} failed:\n" + "\n".join(tally.failures[:25])
    assert tally.frames >= MIN_FRAMES, report
    assert sum(sum(seen.values()) for seen in tally.observed.values()) >= 600, report
    assert health.events >= 3 and health.pongs >= 10 and health.fresh_sockets >= 1, report

    await until(lambda: not leftovers(live, tasks_before))
    assert not leftovers(live, tasks_before), f"{report}\nleft behind: {leftovers(live, tasks_before)}"
    growth = rss() - rss_before
    print(f"RSS grew {growth / 2**20:.0f} MiB")
    assert growth < MAX_RSS_GROWTH, f"{report}\nRSS grew {growth / 2**20:.0f} MiB"


def test_the_generator_replays_from_its_seed() -> None:
    setup = Setup(["a.b.c", "d.e.f"], "1", "2", "g.h.i", "3")
    first, second = (Fuzzer(7, setup, 2**18).scripts() for _ in range(2))
    assert [s.frames for s in first] == [s.frames for s in second]
    assert [s.frames for s in Fuzzer(8, setup, 2**18).scripts()] != [s.frames for s in first]


# -- server bugs the fuzzer found ---------------------------------------------------------------

DEEP = 10_000
DIGITS = "9" * 5000

# Minimal reproductions, (init first, frames, the close code due). json.loads raises RecursionError
# on deep nesting and ValueError on an integer over Python's 4300-digit limit, which escaped the
# handler's JSONDecodeError branch: the ASGI app raised and the socket was dropped without a close
# frame (1006). A lone surrogate raised UnicodeEncodeError in a close reason, or in PyJWT for a
# token, with the same result.
HOSTILE: dict[str, tuple[bool, list[str], int]] = {
    "deep array frame": (True, ["[" * DEEP + "]" * DEEP], 4400),
    "deep object payload": (
        True,
        ['{"type":"ping","payload":' + '{"a":' * DEEP + "1" + "}" * DEEP + "}"],
        4400,
    ),
    "deep variables": (
        True,
        [
            '{"id":"1","type":"subscribe","payload":{"query":"{ viewer { id } }","variables":{"v":'
            + "[" * DEEP
            + "]" * DEEP
            + "}}}"
        ],
        4400,
    ),
    "deep frame before init": (False, ["[" * DEEP + "]" * DEEP], 4400),
    "huge integer id": (True, ['{"id":' + DIGITS + ',"type":"subscribe","payload":{"query":"{ a }"}}'], 4400),
    "huge integer in variables": (
        True,
        [
            '{"id":"1","type":"subscribe","payload":{"query":"{ viewer { id } }","variables":{"v":'
            + DIGITS
            + "}}}"
        ],
        4400,
    ),
    "huge integer frame": (False, [DIGITS], 4400),
    "lone surrogate in an unknown type": (True, ['{"type":"\\ud800"}'], 4400),
    "lone surrogate in a duplicate id": (
        True,
        [
            '{"id":"\\udfff","type":"subscribe",'
            '"payload":{"query":"subscription { taskEvents(projectId: QUIET) { type } }"}}'
        ]
        * 2,
        4409,
    ),
    "lone surrogate in the token": (
        False,
        ['{"type":"connection_init","payload":{"authorization":"Bearer \\ud800"}}'],
        4403,
    ),
}


async def hostile(live: LiveServer, setup: Setup, token: str, init: bool, frames: list[str]) -> int | str:
    """The close code the last frame gets, or what happened instead."""
    async with ws(live, token if init else None, max_size=None) as client:
        for frame in frames:
            await client.send(frame.replace("QUIET", setup.quiet))
        try:
            code, _ = await client.closed(within=CLOSE_WITHIN)
        except TimeoutError:
            return "not closed"
        except AssertionError:
            return "dropped without a close frame"
        return code or "no code"


@pytest.mark.parametrize("case", sorted(HOSTILE))
async def test_hostile_frames_get_their_close_code(live: LiveServer, case: str) -> None:
    setup = await prepare(live, users=1)
    init, frames, code = HOSTILE[case]
    assert await hostile(live, setup, setup.tokens[0], init, frames) == code


async def test_hostile_frames_do_not_take_the_server_down(live: LiveServer) -> None:
    """Whatever each hostile socket gets, the server answers others and leaves nothing behind."""
    setup = await prepare(live, users=4)
    tasks_before = set(asyncio.all_tasks())
    async with AsyncExitStack() as stack:
        client = await follow(live, setup, stack)
        cases = [HOSTILE[name] for name in sorted(HOSTILE)] * 3
        outcomes = await asyncio.gather(
            *(
                hostile(live, setup, setup.tokens[n % 4], init, frames)
                for n, (init, frames, _) in enumerate(cases)
            )
        )
        assert "not closed" not in outcomes, outcomes
        await client.send({"type": "ping"})
        assert await client.receive(within=PONG_WITHIN) == {"type": "pong"}
        await live.gql(setup.watcher, CREATE_TASK, p=setup.watched, t="after")
        assert (await client.next("w"))["taskEvents"]["task"]["title"] == "after"
    await until(lambda: not leftovers(live, tasks_before))
    assert not leftovers(live, tasks_before)


@asynccontextmanager
async def slow_broker(live: LiveServer, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[None]:
    """Subscribing to the broker takes 300 ms, as over a slow Redis link: a window to cancel in."""
    subscribe = live.hub.broadcast.subscribe

    @asynccontextmanager
    async def slowly(channel: str) -> AsyncIterator[Any]:
        await asyncio.sleep(0.3)
        async with subscribe(channel) as subscriber:
            yield subscriber

    monkeypatch.setattr(live.hub.broadcast, "subscribe", slowly)
    yield


async def test_subscription_cancelled_while_its_topic_starts_leaves_nothing_behind(
    live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = await prepare(live, users=1)
    tasks_before = set(asyncio.all_tasks())
    async with slow_broker(live, monkeypatch), ws(live, setup.tokens[0]) as client:
        await client.subscribe("1", TASK_EVENTS, p=setup.quiet)
        assert await until(lambda: live.hub.topics == {f"project:{setup.quiet}": 0})  # setting up
        await client.complete("1")
        await client.send({"type": "ping"})
        assert await client.receive() == {"type": "pong"}
    await until(lambda: not leftovers(live, tasks_before))
    assert not leftovers(live, tasks_before)


async def test_queue_metrics_cancelled_while_starting_leaves_nothing_behind(
    live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = await prepare(live, users=1)
    tasks_before = set(asyncio.all_tasks())
    async with slow_broker(live, monkeypatch), ws(live, setup.tokens[0]) as client:
        await client.subscribe("1", METRICS, q=setup.queue)
        assert await until(lambda: f"queue:{setup.queue}" in live.hub.metrics.watched)  # starting
        await client.complete("1")
        await client.send({"type": "ping"})
        assert await client.receive() == {"type": "pong"}
    await until(lambda: not leftovers(live, tasks_before))
    assert not leftovers(live, tasks_before)


async def test_an_empty_document_is_an_error_of_that_operation(live: LiveServer) -> None:
    async with ws(live, live.token("a@example.test")) as client:
        await client.subscribe("1", "")
        message = await client.receive()
        assert message["type"] == "error" and message["id"] == "1"
        assert _code(message) in {"GRAPHQL_PARSE_FAILED", "BAD_REQUEST"}, message  # as over HTTP


async def test_the_subscription_limit_error_has_a_code(live: LiveServer) -> None:
    limit = live.settings.max_subscriptions_per_connection
    async with ws(live, live.token("a@example.test")) as client:
        for n in range(limit + 1):
            await client.subscribe(str(n), "subscription { notifications { type } }")
        message = await client.receive()
        assert message["type"] == "error" and message["id"] == str(limit)
        assert _code(message), message
