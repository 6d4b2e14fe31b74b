"""Prometheus metrics of this worker process, and one structured log line per operation.

Metrics are per process: with several workers, scrape each (or front them with a collector)."""

from __future__ import annotations

import json
import logging
import re

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry()
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_MAX_NAMES = 200

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
OPERATIONS = Counter(
    "pulseboard_operations_total",
    "GraphQL operations by type, name and outcome.",
    ["type", "name", "outcome"],
    registry=REGISTRY,
)
DURATION = Histogram(
    "pulseboard_operation_duration_seconds",
    "GraphQL operation duration (a subscription's is its lifetime).",
    ["type", "name"],
    registry=REGISTRY,
)
ERRORS = Counter("pulseboard_errors_total", "Errors by extensions.code.", ["code"], registry=REGISTRY)

_names: set[str] = set()
operations_log = logging.getLogger("pulseboard.operations")


def topic_kind(topic: str) -> str:
    """project, queue, tickets or notifications: a bounded label."""
    head, _, rest = topic.partition(":")
    return rest.rsplit(":", 1)[-1] if head == "user" else head


def operation_label(name: str | None) -> str:
    """Client-chosen names are bounded: well-formed ones, up to a cap, else 'other'."""
    if not name:
        return "anonymous"
    if name in _names:
        return name
    if _NAME.match(name) and len(_names) < _MAX_NAMES:
        _names.add(name)
        return name
    return "other"


def observe_operation(
    *, kind: str, name: str | None, seconds: float, codes: list[str], user_id: int | None
) -> None:
    label = operation_label(name)
    OPERATIONS.labels(kind, label, "error" if codes else "ok").inc()
    DURATION.labels(kind, label).observe(seconds)
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


def configure_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
