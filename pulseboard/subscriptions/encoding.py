"""Event encoding: the one wire form of an event between workers, and the clients' cursors."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from pulseboard.errors import bad_input
from pulseboard.models import Event


@dataclass(frozen=True, slots=True)
class EventMessage:
    topic: str
    seq: int
    type: str
    payload: dict[str, Any]
    actor_id: int | None
    created_at: dt.datetime


def from_row(row: Event) -> EventMessage:
    return EventMessage(row.topic, row.seq, row.type, row.payload, row.actor_id, row.created_at)


def encode(message: EventMessage) -> str:
    """JSON text (ASCII only, so every transport carries it unchanged)."""
    return json.dumps(
        {
            "topic": message.topic,
            "seq": message.seq,
            "type": message.type,
            "payload": message.payload,
            "actorId": message.actor_id,
            "createdAt": message.created_at.isoformat(),
        },
        separators=(",", ":"),
    )


def decode(text: str) -> EventMessage:
    """The message in `text`; ValueError when it is not one of ours."""
    try:
        data = json.loads(text)
        return EventMessage(
            topic=str(data["topic"]),
            seq=int(data["seq"]),
            type=str(data["type"]),
            payload=dict(data["payload"]),
            actor_id=None if data["actorId"] is None else int(data["actorId"]),
            created_at=dt.datetime.fromisoformat(data["createdAt"]),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"not an event message: {error}") from None


def cursor(topic: str, seq: int) -> str:
    """An opaque resume position: the events of `topic` after `seq`."""
    return base64.urlsafe_b64encode(f"{topic}#{seq}".encode()).decode()


def parse_cursor(value: str, topic: str) -> int:
    """The seq in a cursor of `topic`; BAD_USER_INPUT (field `after`) for anything else."""
    try:
        text = base64.urlsafe_b64decode(value.encode()).decode()
        cursor_topic, _, seq = text.rpartition("#")
        number = int(seq)
    except (ValueError, binascii.Error, UnicodeError):
        raise bad_input("after", "Invalid cursor.") from None
    if cursor_topic != topic or number < 0:
        raise bad_input("after", "This cursor belongs to another stream.")
    return number
