"""Prometheus metrics of this worker process, and one structured log line per operation.

Metrics are per process: with several workers, scrape each (or front them with a collector)."""

from __future__ import annotations

import copy
import json
import logging
import re

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry()
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# C0, DEL, C1 and the Unicode line and paragraph separators: anything a terminal or log viewer
# may take as the end of a line or as a command.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

CONNECTIONS = Gauge("pulseboard_ws_connections", "Open GraphQL WebSockets.", registry=REGISTRY)
SUBSCRIPTIONS = Gauge(
    "pulseboard_subscriptions_active", "Active subscriptions.", ["field"], registry=REGISTRY
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
HUB_TOPICS = Gauge("pulseboard_hub_topics", "Topics with local listeners.", registry=REGISTRY)
COHORTS = Gauge(
    "pulseboard_cohorts", "Cohorts: subscriptions that share one execution per event.", registry=REGISTRY
)
COHORT_MEMBERS = Gauge(
    "pulseboard_cohort_members", "Subscriptions delivered through cohorts.", registry=REGISTRY
)
OUTBOX_FRAMES = Gauge("pulseboard_outbox_frames", "Frames waiting in sockets' outboxes.", registry=REGISTRY)
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
    "How late the worker's event loop ran its last timer.",
    registry=REGISTRY,
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


def exposition() -> bytes:
    return generate_latest(REGISTRY)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any structured fields."""

    FIELDS = ("operation", "type", "duration_ms", "user_id", "error_codes")

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
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


def configure_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(fmt))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
