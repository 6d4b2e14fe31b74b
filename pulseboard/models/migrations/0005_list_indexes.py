from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0004_idempotency_keys')]

    initial = False

    operations = [
        ops.AddIndex(
            model_name='Notification',
            index=Index(fields=['user_id', 'id'], name='notifications_user_idx'),
        ),
        ops.RemoveIndex(
            model_name='Task',
            name='tasks_assignee_idx',
            fields=None,
        ),
        ops.AddIndex(
            model_name='Task',
            index=Index(fields=['assignee_id', 'project_id', 'status', 'position'], name='tasks_assignee_board_idx'),
        ),
        ops.AddIndex(
            model_name='Ticket',
            index=Index(fields=['queue_id', 'id'], name='tickets_queue_idx'),
        ),
    ]
