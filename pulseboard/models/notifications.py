"""Notification preferences and stored notifications, both per user."""

from tortoise import fields
from tortoise.indexes import Index
from tortoise.models import Model

from pulseboard.models.enums import NotificationType
from pulseboard.models.users import User


class NotificationPreferences(Model):
    user_id: int
    id = fields.IntField(primary_key=True)
    user: fields.OneToOneRelation[User] = fields.OneToOneField(
        "models.User", related_name="preferences", on_delete=fields.CASCADE
    )
    enabled = fields.BooleanField(default=True)
    sound = fields.BooleanField(default=True)
    # {"TASK_ASSIGNED": {"IN_APP": true, "BROWSER": false, ...}, ...}; missing entries are on.
    channels: dict[str, dict[str, bool]] = fields.JSONField(default=dict)  # type: ignore[assignment]
    quiet_start = fields.CharField(max_length=5, null=True)
    quiet_end = fields.CharField(max_length=5, null=True)
    quiet_timezone = fields.CharField(max_length=64, null=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "notification_preferences"


class Notification(Model):
    user_id: int
    id = fields.IntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="notifications", on_delete=fields.CASCADE
    )
    type = fields.CharEnumField(NotificationType, max_length=32)
    title = fields.CharField(max_length=300)
    body = fields.TextField(default="")
    # Plain ids, not foreign keys: a notification outlives the task or ticket it was about.
    task_id = fields.IntField(null=True)
    ticket_id = fields.IntField(null=True)
    read_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "notifications"
        indexes = [
            # The viewer's notifications, newest first (the list and its cursor).
            Index(fields=("user_id", "id"), name="notifications_user_idx"),
            # Unread ones: unreadCount, unreadOnly and markAllNotificationsRead.
            Index(fields=("user_id", "read_at"), name="notifications_user_read_idx"),
        ]
