from tortoise import migrations
from tortoise.migrations import operations as ops
from pulseboard.models.enums import ProjectRole
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0002_foreign_key_indexes')]

    initial = False

    operations = [
        ops.AddField(
            model_name='ProjectMember',
            name='role',
            field=fields.CharEnumField(default=ProjectRole.MEMBER, db_default='MEMBER', description='OWNER: OWNER\nMEMBER: MEMBER', enum_type=ProjectRole, max_length=16),
        ),
        ops.AddField(
            model_name='User',
            name='claims_issued_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        # Whoever created a project owns it; everyone added later stays a member.
        ops.RunSQL(
            "UPDATE project_members SET role = 'OWNER' WHERE user_id = "
            "(SELECT created_by_id FROM projects WHERE projects.id = project_members.project_id)",
            reverse_sql="UPDATE project_members SET role = 'MEMBER'",
        ),
    ]
