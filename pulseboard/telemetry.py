"""Prometheus metrics, and one structured log line per operation.

With several workers (`serve --workers N`), the supervisor gives them a shared
PROMETHEUS_MULTIPROC_DIR: each worker writes its figures there and /metrics, whichever worker
answers it, sums every worker's (gauges of live state over the workers alive)."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

REGISTRY = CollectorRegistry()
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# C0, DEL, C1 and the Unicode line and paragraph separators: anything a terminal or log viewer
# may take as the end of a line or as a command.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

# Gauges' multiprocess_mode applies with several workers only: "livesum" adds up the workers
# alive (a dead worker's figures are dropped), "livemax" shows the worst one.
LIVE: Final = "livesum"
CONNECTIONS = Gauge(
    "pulseboard_ws_connections", "Open GraphQL WebSockets.", registry=REGISTRY, multiprocess_mode=LIVE
)
SUBSCRIPTIONS = Gauge(
    "pulseboard_subscriptions_active",
    "Active subscriptions.",
    ["field"],
    registry=REGISTRY,
    multiprocess_mode=LIVE,
)
PUBLISHED = Counter(
    "pulseboard_events_published_total", "Events published after commit.", ["kind"], registry=REGISTRY
)
PUBLISH_FAILURES = Counter(
    "pulseboard_publish_failures_total", "Publishes that failed (caught up from the log).", registry=REGISTRY
)
DELIVERED = Counter(
    "pulseboard_events_delivered_total", "Events sent to subscribers.", ["kind"], registry=REGISTRY
)
DELIVERY_LATENCY = Histogram(
    "pulseboard_delivery_latency_seconds",
    "From commit to the event being handed to the subscriber's socket.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
OVERFLOWS = Counter(
    "pulseboard_queue_overflows_total",
    "Subscriber inboxes that overflowed (read from the log).",
    registry=REGISTRY,
)
CATCHUPS = Counter(
    "pulseboard_catchups_total", "Topics caught up from the log by the sweep.", registry=REGISTRY
)
RESUMES = Counter(
    "pulseboard_resumes_total", "Subscriptions started with an after: cursor.", registry=REGISTRY
)
PUBLISH_QUEUE = Gauge(
    "pulseboard_publish_queue_events",
    "Committed events waiting to be published to the broker (read every sweep).",
    registry=REGISTRY,
    multiprocess_mode=LIVE,
)
BROKER_UP = Gauge(
    "pulseboard_broker_up",
    "1 while the worker's broker connection is up, else 0 (several workers: the lowest).",
    registry=REGISTRY,
    multiprocess_mode="livemin",
)
HUB_TOPICS = Gauge(
    "pulseboard_hub_topics", "Topics with local listeners.", registry=REGISTRY, multiprocess_mode=LIVE
)
COHORTS = Gauge(
    "pulseboard_cohorts",
    "Cohorts: subscriptions that share one execution per event.",
    registry=REGISTRY,
    multiprocess_mode=LIVE,
)
COHORT_MEMBERS = Gauge(
    "pulseboard_cohort_members",
    "Subscriptions delivered through cohorts.",
    registry=REGISTRY,
    multiprocess_mode=LIVE,
)
OUTBOX_FRAMES = Gauge(
    "pulseboard_outbox_frames",
    "Frames waiting in sockets' outboxes.",
    registry=REGISTRY,
    multiprocess_mode=LIVE,
)
OUTBOX_OVERFLOWS = Counter(
    "pulseboard_outbox_overflows_total",
    "Frames that did not fit a socket's outbox (that subscriber caught up instead).",
    registry=REGISTRY,
)
SUBSCRIBER_CATCHUPS = Counter(
    "pulseboard_subscriber_catchups_total",
    "Subscribers that caught up on their own (a full outbox, a gap or a resume cursor).",
    registry=REGISTRY,
)
LOOP_LAG = Gauge(
    "pulseboard_event_loop_lag_seconds",
    "How late the worker's event loop ran its last timer (several workers: the worst).",
    registry=REGISTRY,
    multiprocess_mode="livemax",
)
SHED = Counter(
    "pulseboard_requests_shed_total",
    "HTTP GraphQL requests answered 503 because the worker was overloaded.",
    registry=REGISTRY,
)
DELIVERY_RETRIES = Counter(
    "pulseboard_delivery_retries_total",
    "Retries of a delivery step after a database or broker error.",
    registry=REGISTRY,
)
# Labelled by the operation's first root field, not its client-chosen name: only the schema's
# field names (or "invalid", "other") can become label values, so clients cannot mint series.
OPERATIONS = Counter(
    "pulseboard_operations_total",
    "GraphQL operations by type, first root field and outcome.",
    ["type", "field", "outcome"],
    registry=REGISTRY,
)
DURATION = Histogram(
    "pulseboard_operation_duration_seconds",
    "GraphQL operation duration (a subscription's is its lifetime).",
    ["type", "field"],
    registry=REGISTRY,
)
ERRORS = Counter("pulseboard_errors_total", "Errors by extensions.code.", ["code"], registry=REGISTRY)
DATABASE_FAULTS = Counter(
    "pulseboard_database_faults_total",
    "Requests, sockets and operations that failed on a database fault (SERVICE_UNAVAILABLE).",
    ["kind"],
    registry=REGISTRY,
)
TRANSACTION_RETRIES = Counter(
    "pulseboard_transaction_retries_total",
    "Units of work run again after a serialization failure or deadlock.",
    registry=REGISTRY,
)

operations_log = logging.getLogger("pulseboard.operations")


def topic_kind(topic: str) -> str:
    """project, queue, tickets or notifications: a bounded label."""
    head, _, rest = topic.partition(":")
    return rest.rsplit(":", 1)[-1] if head == "user" else head


def observe_operation(
    *,
    kind: str,
    name: str | None,
    field: str,
    seconds: float,
    codes: list[str],
    user_id: int | None,
) -> None:
    """`field` labels the metrics and must come from the schema; `name` is the client's and is
    only logged."""
    OPERATIONS.labels(kind, field, "error" if codes else "ok").inc()
    DURATION.labels(kind, field).observe(seconds)
    for code in codes:
        ERRORS.labels(code).inc()
    operations_log.info(
        "%s %s %.1fms user=%s errors=%s",
        kind,
        name or "anonymous",
        seconds * 1000,
        user_id,
        ",".join(codes) or "-",
        extra={
            "operation": name,
            "type": kind,
            "duration_ms": round(seconds * 1000, 2),
            "user_id": user_id,
            "error_codes": codes,
        },
    )


# Set by the supervisor of several workers (pulseboard.serving); unset, metrics are this process's.
MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"


@dataclass
class _Window:
    logger: logging.Logger
    level: int
    interval: float
    started: float
    suppressed: int = 0
    flush: asyncio.TimerHandle | None = None


_windows: dict[str, _Window] = {}


def log_limited(
    logger: logging.Logger,
    key: str,
    message: str,
    *args: object,
    interval: float = 10.0,
    level: int = logging.WARNING,
) -> bool:
    """Logs `message % args` for the first failure of kind `key`, then counts the others: while
    they go on, one line per `interval` seconds says "<key>: N more in the last 10 s". Once an
    interval passes without one, the next is logged in full again. No traceback: the kind and
    the message say what failed. Returns whether this call logged its message."""
    now = time.monotonic()
    window = _windows.get(key)
    if window is not None and now - window.started < window.interval:
        window.suppressed += 1
        if window.flush is None:
            with contextlib.suppress(RuntimeError):  # no running loop: reported by the next call
                loop = asyncio.get_running_loop()
                window.flush = loop.call_later(window.started + window.interval - now, _flush, key)
        return False
    if window is not None:
        if window.flush is not None:
            window.flush.cancel()
        _summary(key, window)
    _windows[key] = _Window(logger, level, interval, now)
    logger.log(level, message, *args)
    return True


def _summary(key: str, window: _Window) -> None:
    if window.suppressed:
        window.logger.log(
            window.level, "%s: %d more in the last %g s", key, window.suppressed, window.interval
        )


def _flush(key: str) -> None:
    window = _windows.get(key)
    if window is None:
        return
    _summary(key, window)
    if window.suppressed:  # still failing: the next interval is counted too
        _windows[key] = _Window(window.logger, window.level, window.interval, time.monotonic())
    else:
        del _windows[key]


def exposition() -> bytes:
    directory = os.environ.get(MULTIPROC_DIR)
    if not directory:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)
    return generate_latest(registry)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any structured fields."""

    FIELDS = ("operation", "type", "duration_ms", "user_id", "error_codes")

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,  # which worker, with several
        }
        entry.update({f: getattr(record, f) for f in self.FIELDS if hasattr(record, f)})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def escape_controls(text: str) -> str:
    """`text` on one line: control characters as backslash escapes (\\n, \\x1b, \\u2028)."""
    return _CONTROL.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return _ESCAPES.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")


class TextFormatter(logging.Formatter):
    """Messages carry client text (operation names, say): a newline in it must not start what
    reads as another record. Tracebacks are appended unescaped: they are the server's own."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        if not _CONTROL.search(record.message):
            return super().formatMessage(record)
        safe = copy.copy(record)  # other handlers (and caplog) keep the record as logged
        safe.message = escape_controls(record.message)
        return super().formatMessage(safe)


def formatter(fmt: str) -> logging.Formatter:
    """The formatter of PULSEBOARD_LOG_FORMAT (a record's message is one line in either)."""
    return JsonFormatter() if fmt == "json" else TextFormatter(TEXT_FORMAT)


class OneLineDriverLog(logging.Filter):
    """asyncpg's pool logs a traceback each time it fails to reopen its minimum of connections
    (1 s, 2 s, 4 s... apart while the database is down): its exception goes on the line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            record.msg = f"{record.getMessage()}: {type(error).__name__}: {escape_controls(str(error))[:300]}"
            record.args, record.exc_info, record.exc_text = None, None, None
        return True


DRIVER_LOGGERS = ("asyncpg.pool",)
# Tortoise logs "Tortoise-ORM started, {...object reprs...}" and "Tortoise-ORM shutdown" at INFO
# each time a command opens or closes its connections (several times per start): noise to an
# operator. Its warnings and errors still show; at DEBUG, everything does.
QUIET_AT_INFO = ("tortoise",)


def configure_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(fmt))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    for name in DRIVER_LOGGERS:
        driver = logging.getLogger(name)
        if not any(isinstance(f, OneLineDriverLog) for f in driver.filters):
            driver.addFilter(OneLineDriverLog())
    for name in QUIET_AT_INFO:
        logging.getLogger(name).setLevel(logging.DEBUG if level.upper() == "DEBUG" else logging.WARNING)
