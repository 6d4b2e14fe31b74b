from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0001_initial')]

    initial = False

    operations = [
        ops.AddIndex(
            model_name='ProjectMember',
            index=Index(fields=['user_id'], name='project_members_user_idx'),
        ),
        ops.AddIndex(
            model_name='Queue',
            index=Index(fields=['team_id'], name='queues_team_idx'),
        ),
        ops.AddIndex(
            model_name='Task',
            index=Index(fields=['assignee_id'], name='tasks_assignee_idx'),
        ),
        ops.AddIndex(
            model_name='TaskComment',
            index=Index(fields=['task_id', 'id'], name='task_comments_task_idx'),
        ),
        ops.AddIndex(
            model_name='TeamMember',
            index=Index(fields=['user_id'], name='team_members_user_idx'),
        ),
        ops.AddIndex(
            model_name='Ticket',
            index=Index(fields=['requester_id', 'id'], name='tickets_requester_idx'),
        ),
        ops.AddIndex(
            model_name='Ticket',
            index=Index(fields=['assignee_id', 'id'], name='tickets_assignee_idx'),
        ),
        ops.AddIndex(
            model_name='TicketComment',
            index=Index(fields=['ticket_id', 'id'], name='ticket_comments_ticket_idx'),
        ),
    ]
