"""The event log: every state change, per topic, numbered without gaps."""

from tortoise import fields
from tortoise.models import Model


class Event(Model):
    id = fields.BigIntField(primary_key=True)
    topic = fields.CharField(max_length=100)
    seq = fields.BigIntField()
    type = fields.CharField(max_length=32)
    payload: dict = fields.JSONField()  # type: ignore[assignment]
    # A plain id: the log is history and must not change when a user row does.
    actor_id = fields.IntField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "events"
        unique_together = (("topic", "seq"),)


# The last seq handed out per topic. Its row lock, held to commit, orders a topic's writers.
class TopicCounter(Model):
    topic = fields.CharField(max_length=100, primary_key=True)
    seq = fields.BigIntField(default=0)

    class Meta:
        table = "topic_counters"
