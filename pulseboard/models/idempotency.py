"""Idempotency keys: a mutation sent again with the key it was first sent with gets the first
answer instead of running again (resolvers/idempotency.py)."""

from tortoise import fields
from tortoise.indexes import Index
from tortoise.models import Model

from pulseboard.models.users import User


class IdempotencyKey(Model):
    user_id: int
    id = fields.BigIntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="idempotency_keys", on_delete=fields.CASCADE
    )
    key = fields.CharField(max_length=255)
    # SHA-256 of the document, operation name and variables the key was first used with.
    fingerprint = fields.CharField(max_length=64)
    # The response the first request got ({"data": …, "errors": […]}), written in the transaction
    # of the change it reports (a committed row always has one).
    answer: dict | None = fields.JSONField(null=True)  # type: ignore[assignment]
    created_at = fields.DatetimeField()
    expires_at = fields.DatetimeField()

    class Meta:
        table = "idempotency_keys"
        unique_together = (("user", "key"),)
        indexes = (Index(fields=("expires_at",)),)
