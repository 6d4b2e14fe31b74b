"""Notification preferences, stored notifications and their e-mail outbox, all per user."""

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
    # How long before a task's due date its assignee hears it is due soon.
    due_reminder_minutes = fields.IntField(default=60, db_default=60)
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
    # Where it was delivered, decided once when it was made (resolvers/notifications.decide). Rows
    # written before these existed were in-app only: the database defaults say so.
    in_app = fields.BooleanField(default=True, db_default=True)  # listed and counted
    browser = fields.BooleanField(default=False, db_default=False)  # for a pop-up now
    email = fields.BooleanField(default=False, db_default=False)  # an EmailOutbox row was written
    sound = fields.BooleanField(default=False, db_default=False)  # the pop-up may play a sound
    quiet = fields.BooleanField(default=False, db_default=False)  # the recipient was in quiet hours

    class Meta:
        table = "notifications"
        indexes = [
            # The viewer's notifications, newest first (the list and its cursor).
            Index(fields=("user_id", "id"), name="notifications_user_idx"),
            # Unread ones: unreadCount, unreadOnly and markAllNotificationsRead.
            Index(fields=("user_id", "read_at"), name="notifications_user_read_idx"),
        ]


class EmailOutbox(Model):
    """One e-mail per notification, rendered when the notification was made and sent by
    pulseboard/mail.py: due once next_attempt_at has passed, held by a sender until
    claimed_until, done once sent_at or failed_at is set. Everything a sender needs is here, so
    a restart or another worker carries on."""

    id = fields.IntField(primary_key=True)
    # Unique: a notification gets one e-mail. A plain id, as Notification's own: it is sent even
    # if the notification is deleted meanwhile.
    notification_id = fields.IntField(unique=True)
    recipient = fields.CharField(max_length=255)
    subject = fields.CharField(max_length=300)
    text_body = fields.TextField()
    html_body = fields.TextField()
    attempts = fields.IntField(default=0)
    next_attempt_at = fields.DatetimeField()
    claimed_until = fields.DatetimeField(null=True)
    sent_at = fields.DatetimeField(null=True)
    failed_at = fields.DatetimeField(null=True)  # given up: a permanent refusal or too many attempts
    last_error = fields.TextField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "email_outbox"
        indexes = [
            # The senders' scan for due rows (those neither sent nor given up).
            Index(fields=("sent_at", "failed_at", "next_attempt_at"), name="email_outbox_due_idx"),
        ]
