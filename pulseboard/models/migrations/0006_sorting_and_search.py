from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.migrations.schema_editor.base import BaseSchemaEditor
from tortoise import fields
from tortoise.indexes import Index

# urgency(priority) of the rows written before the column existed (URGENT 0 ... LOW 3).
BACKFILL = (
    "UPDATE {table} SET urgency = CASE priority WHEN 'URGENT' THEN 0 WHEN 'HIGH' THEN 1"
    " WHEN 'LOW' THEN 3 ELSE 2 END"
)
# `search` filters with Tortoise's icontains, UPPER(CAST(column AS VARCHAR)) LIKE '%...%': on
# PostgreSQL, trigram indexes on that very expression serve it. SQLite scans (it has no such index).
SEARCHED = (("tasks", "title"), ("tasks", "description"), ("tickets", "title"), ("tickets", "description"))


async def search_indexes(apps: object, editor: BaseSchemaEditor) -> None:
    if editor.DIALECT != "postgres":
        return
    await editor._run_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for table, column in SEARCHED:
        await editor._run_sql(
            f'CREATE INDEX "{table}_{column}_search_idx" ON "{table}"'
            f' USING gin ((UPPER(CAST("{column}" AS VARCHAR))) gin_trgm_ops)'
        )


async def drop_search_indexes(apps: object, editor: BaseSchemaEditor) -> None:
    if editor.DIALECT != "postgres":
        return
    for table, column in SEARCHED:
        await editor._run_sql(f'DROP INDEX IF EXISTS "{table}_{column}_search_idx"')


class Migration(migrations.Migration):
    dependencies = [('models', '0005_list_indexes')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Task',
            name='urgency',
            field=fields.SmallIntField(default=2, db_default=2),
        ),
        ops.AddIndex(
            model_name='Task',
            index=Index(fields=['project_id', 'id'], name='tasks_project_idx'),
        ),
        ops.AddIndex(
            model_name='Task',
            index=Index(fields=['project_id', 'urgency', 'id'], name='tasks_priority_idx'),
        ),
        ops.AddField(
            model_name='Ticket',
            name='urgency',
            field=fields.SmallIntField(default=2, db_default=2),
        ),
        ops.AddIndex(
            model_name='Ticket',
            index=Index(fields=['queue_id', 'urgency', 'id'], name='tickets_priority_idx'),
        ),
        ops.RunSQL(
            [BACKFILL.format(table="tasks"), BACKFILL.format(table="tickets")],
            reverse_sql=ops.RunSQL.noop,
        ),
        ops.RunPython(search_indexes, drop_search_indexes),
    ]
