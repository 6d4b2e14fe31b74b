from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0006_sorting_and_search')]

    initial = False

    operations = [
        ops.CreateModel(
            name='EmailOutbox',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('notification_id', fields.IntField(unique=True)),
                ('recipient', fields.CharField(max_length=255)),
                ('subject', fields.CharField(max_length=300)),
                ('text_body', fields.TextField(unique=False)),
                ('html_body', fields.TextField(unique=False)),
                ('attempts', fields.IntField(default=0)),
                ('next_attempt_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('claimed_until', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('sent_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('failed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('last_error', fields.TextField(null=True, unique=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'email_outbox', 'app': 'models', 'indexes': [Index(fields=['sent_at', 'failed_at', 'next_attempt_at'], name='email_outbox_due_idx')], 'pk_attr': 'id', 'table_description': 'One e-mail per notification, rendered when the notification was made and sent by'},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='Notification',
            name='browser',
            field=fields.BooleanField(default=False, db_default=False),
        ),
        ops.AddField(
            model_name='Notification',
            name='email',
            field=fields.BooleanField(default=False, db_default=False),
        ),
        ops.AddField(
            model_name='Notification',
            name='in_app',
            field=fields.BooleanField(default=True, db_default=True),
        ),
        ops.AddField(
            model_name='Notification',
            name='quiet',
            field=fields.BooleanField(default=False, db_default=False),
        ),
        ops.AddField(
            model_name='Notification',
            name='sound',
            field=fields.BooleanField(default=False, db_default=False),
        ),
    ]
