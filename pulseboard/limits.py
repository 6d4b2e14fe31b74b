"""Limits that protect the service: from one client (body size, mutation rate, open sockets) and
from too much work at once (overload shedding)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Hashable
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pulseboard import telemetry
from pulseboard.errors import AppError, ErrorCode


class BodySizeLimit:
    """Answers 413 to an HTTP request whose body is larger than `max_bytes`, before reading it
    whole (by Content-Length when given, by counting otherwise)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._too_large(send)
            return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except _TooLarge:
            if not started:
                await self._too_large(send)

    async def _too_large(self, send: Send) -> None:
        body = json.dumps(
            {
                "errors": [
                    {
                        "message": f"Request body larger than {self.max_bytes} bytes.",
                        "extensions": {"code": ErrorCode.BAD_USER_INPUT.value},
                    }
                ]
            }
        ).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class RateLimiter:
    """A token bucket per user: `rate` per second on average, bursts up to `burst`. Per worker."""

    rate: float
    burst: int
    _buckets: dict[int, _Bucket] = field(default_factory=dict)

    def check(self, user_id: int, count: int = 1) -> None:
        """Take `count` tokens for one request, or refuse it whole."""
        if count > self.burst:
            raise AppError(
                ErrorCode.RATE_LIMITED,
                f"At most {self.burst} mutations are allowed in one request ({count} sent).",
                retryAfterSeconds=None,
            )
        now = time.monotonic()
        bucket = self._buckets.setdefault(user_id, _Bucket(tokens=self.burst, updated=now))
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens < count:
            retry = (count - bucket.tokens) / self.rate
            raise AppError(
                ErrorCode.RATE_LIMITED,
                f"Too many mutations; retry in {retry:.1f} s.",
                retryAfterSeconds=round(retry, 2),
            )
        bucket.tokens -= count


@dataclass
class ConnectionCounter:
    """Open WebSockets per key (a user, or a client address for anonymous sockets) in this worker."""

    limit: int
    _open: Counter[Hashable] = field(default_factory=Counter)

    def acquire(self, key: Hashable) -> bool:
        if self._open[key] >= self.limit:
            return False
        self._open[key] += 1
        return True

    def release(self, key: Hashable) -> None:
        self._open[key] -= 1
        if self._open[key] <= 0:
            del self._open[key]

    @property
    def total(self) -> int:
        return sum(self._open.values())


class LoopLag:
    """How late this worker's event loop runs a timer: a tick every `interval` seconds measures
    by how much it woke after its due time. `seconds` is the least of the last `window` ticks'
    lateness, so one long callback (a full garbage collection, a burst of handshakes) does not
    count; a saturated worker, late tick after tick, does."""

    def __init__(self, interval: float = 0.05, window: int = 3) -> None:
        self.interval = interval
        self.seconds = 0.0
        self._recent: deque[float] = deque(maxlen=window)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[LoopLag]:
        task = asyncio.create_task(self._tick())
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            self._recent.append(max(0.0, loop.time() - due))
            full = len(self._recent) == self._recent.maxlen
            self.seconds = min(self._recent) if full else 0.0
            telemetry.LOOP_LAG.set(self.seconds)


class Shed:
    """Past capacity, answers new HTTP requests to `paths` 503 SERVICE_UNAVAILABLE with
    Retry-After, before reading their bodies, while the event loop lags more than `max_lag`
    seconds. Work already admitted (requests in flight, subscribers' deliveries) goes on, so
    delivery stays at capacity instead of every subscriber falling behind with the backlog of
    writes; the writes that were refused did nothing and are safe to retry. WebSockets, health
    and metrics are never shed. `max_lag` 0 turns it off."""

    RETRY_AFTER_SECONDS = 1

    def __init__(self, app: ASGIApp, lag: LoopLag, max_lag: float, paths: tuple[str, ...]) -> None:
        self.app = app
        self.lag = lag
        self.max_lag = max_lag
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.max_lag <= 0
            or scope["type"] != "http"
            or scope["path"] not in self.paths
            or self.lag.seconds <= self.max_lag
        ):
            await self.app(scope, receive, send)
            return
        telemetry.SHED.inc()
        await self._unavailable(scope, send)

    async def _unavailable(self, scope: Scope, send: Send) -> None:
        error = {
            "message": "The server is overloaded; nothing was done. Retry shortly.",
            "extensions": {
                "code": ErrorCode.SERVICE_UNAVAILABLE.value,
                "retryAfterSeconds": self.RETRY_AFTER_SECONDS,
            },
        }
        body = json.dumps({"errors": [error]}).encode()
        accept = dict(scope["headers"]).get(b"accept", b"")
        graphql_response = b"application/graphql-response+json"
        media = graphql_response if graphql_response in accept else b"application/json"
        headers = [
            (b"content-type", media),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(self.RETRY_AFTER_SECONDS).encode()),
        ]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})
