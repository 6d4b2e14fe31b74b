"""Limits that protect the service from one client: body size, mutation rate, open sockets."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
