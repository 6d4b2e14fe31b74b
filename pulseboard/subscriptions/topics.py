"""Topic names: the one place that knows how a topic is spelled."""

from __future__ import annotations


def project(project_id: int) -> str:
    return f"project:{project_id}"


def queue(queue_id: int) -> str:
    return f"queue:{queue_id}"


def ticket(ticket_id: int) -> str:
    """One ticket's changes (the same events as its queue's), for its detail view."""
    return f"ticket:{ticket_id}"


def user_tickets(user_id: int) -> str:
    return f"user:{user_id}:tickets"


def user_notifications(user_id: int) -> str:
    return f"user:{user_id}:notifications"


def access() -> str:
    """Access notices (a user's role changed): every worker listens; no client subscribes."""
    return "access"


def presence() -> str:
    """Presence messages of every project (subscriptions/presence.py): a broker channel only, with
    no event log; every worker that serves presence listens."""
    return "presence"


def lock_order(topic: str) -> tuple[int, str]:
    """A total order on topics. Transactions take topic counters in this order, so they cannot
    deadlock: aggregates (project, queue) and tickets first, then per-user streams."""
    if topic.endswith(":notifications"):
        return (2, topic)
    if topic.startswith("user:"):
        return (1, topic)
    return (0, topic)
