from tortoise import migrations
from tortoise.migrations import operations as ops
from pulseboard.models.enums import NotificationType
from tortoise import fields
from tortoise.indexes import Index
from tortoise.migrations.schema_editor.base import BaseSchemaEditor

# Open, assigned tasks due after the upgrade get their overdue reminder at their due date (the
# due-soon one needs the assignee's lead time, which the next change of the task sets).
ARM = (
    "UPDATE tasks SET remind_at = due_at WHERE due_at > CURRENT_TIMESTAMP"
    " AND assignee_id IS NOT NULL AND status <> 4"
)
# users(search:) matches UPPER(CAST(name AS VARCHAR)) LIKE 'X%' or '% X%', and e-mail addresses
# by prefix (admins) or whole (UPPER(...) = UPPER(...)): on PostgreSQL, trigram indexes serve the
# LIKEs and an expression index the equality. SQLite scans.
PEOPLE_SEARCH = (
    'CREATE INDEX "users_name_search_idx" ON "users"'
    ' USING gin ((UPPER(CAST("name" AS VARCHAR))) gin_trgm_ops)',
    'CREATE INDEX "users_email_search_idx" ON "users"'
    ' USING gin ((UPPER(CAST("email" AS VARCHAR))) gin_trgm_ops)',
    'CREATE INDEX "users_email_upper_idx" ON "users" ((UPPER(CAST("email" AS VARCHAR))))',
)


async def people_search_indexes(apps: object, editor: BaseSchemaEditor) -> None:
    if editor.DIALECT == "postgres":  # pg_trgm was created by 0006
        for statement in PEOPLE_SEARCH:
            await editor._run_sql(statement)


async def drop_people_search_indexes(apps: object, editor: BaseSchemaEditor) -> None:
    if editor.DIALECT == "postgres":
        for name in ("users_name_search_idx", "users_email_search_idx", "users_email_upper_idx"):
            await editor._run_sql(f'DROP INDEX IF EXISTS "{name}"')

class Migration(migrations.Migration):
    dependencies = [('models', '0007_notification_channels')]

    initial = False

    operations = [
        ops.AlterField(
            model_name='Notification',
            name='type',
            field=fields.CharEnumField(description='TASK_ASSIGNED: TASK_ASSIGNED\nTASK_COMPLETED: TASK_COMPLETED\nTASK_COMMENTED: TASK_COMMENTED\nTICKET_ASSIGNED: TICKET_ASSIGNED\nTICKET_STATUS_CHANGED: TICKET_STATUS_CHANGED\nTICKET_PRIORITY_CHANGED: TICKET_PRIORITY_CHANGED\nTICKET_COMMENTED: TICKET_COMMENTED\nTASK_DUE_SOON: TASK_DUE_SOON\nTASK_OVERDUE: TASK_OVERDUE', enum_type=NotificationType, max_length=32),
        ),
        ops.AddField(
            model_name='NotificationPreferences',
            name='due_reminder_minutes',
            field=fields.IntField(default=60, db_default=60),
        ),
        ops.AddField(
            model_name='Task',
            name='remind_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddIndex(
            model_name='Task',
            index=Index(fields=['remind_at'], name='tasks_remind_idx'),
        ),
        ops.RunSQL(ARM, reverse_sql=ops.RunSQL.noop),
        ops.RunPython(people_search_indexes, drop_people_search_indexes),
    ]
