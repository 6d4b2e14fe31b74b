"""Projects, their members, tasks and task comments."""

from tortoise import fields
from tortoise.indexes import Index
from tortoise.models import Model

from pulseboard.models.enums import ProjectRole, TaskPriority, TaskStatus, urgency
from pulseboard.models.users import User


class Project(Model):
    created_by_id: int
    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=200)
    description = fields.TextField(default="")
    created_by: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="created_projects", on_delete=fields.RESTRICT
    )
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "projects"


class ProjectMember(Model):
    project_id: int
    user_id: int
    id = fields.IntField(primary_key=True)
    project: fields.ForeignKeyRelation[Project] = fields.ForeignKeyField(
        "models.Project", related_name="memberships", on_delete=fields.CASCADE
    )
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="project_memberships", on_delete=fields.CASCADE
    )
    # db_default: migration 0003 added the column to tables that had rows already.
    role = fields.CharEnumField(
        ProjectRole, max_length=16, default=ProjectRole.MEMBER, db_default=ProjectRole.MEMBER.value
    )
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "project_members"
        unique_together = (("project", "user"),)
        # The unique index leads with project_id; "my projects" and task visibility look up by user.
        indexes = [Index(fields=("user_id",), name="project_members_user_idx")]


class Task(Model):
    project_id: int
    assignee_id: int | None
    created_by_id: int
    id = fields.IntField(primary_key=True)
    project: fields.ForeignKeyRelation[Project] = fields.ForeignKeyField(
        "models.Project", related_name="tasks", on_delete=fields.CASCADE
    )
    title = fields.CharField(max_length=200)
    description = fields.TextField(default="")
    status = fields.IntEnumField(TaskStatus, default=TaskStatus.TODO)
    position = fields.IntField(default=0)
    priority = fields.CharEnumField(TaskPriority, max_length=16, default=TaskPriority.MEDIUM)
    # urgency(priority), kept beside it by every write: lists ordered by priority page on it.
    urgency = fields.SmallIntField(
        default=urgency(TaskPriority.MEDIUM), db_default=urgency(TaskPriority.MEDIUM)
    )
    progress = fields.SmallIntField(default=0)
    assignee: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="assigned_tasks", null=True, on_delete=fields.SET_NULL
    )
    due_at = fields.DatetimeField(null=True)
    created_by: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="created_tasks", on_delete=fields.RESTRICT
    )
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)
    completed_at = fields.DatetimeField(null=True)
    # When the next due-date reminder falls due (resolvers/reminders); null: none is pending.
    remind_at = fields.DatetimeField(null=True)
    version = fields.IntField(default=1)

    class Meta:
        table = "tasks"
        indexes = [
            Index(fields=("project_id", "status", "position"), name="tasks_board_idx"),
            # A board filtered by assignee (tasks(projectId, assigneeId)), read in board order. It
            # leads with assignee_id: it also serves what (assignee_id) did, SET NULL on user delete.
            Index(
                fields=("assignee_id", "project_id", "status", "position"), name="tasks_assignee_board_idx"
            ),
            # tasks(projectId, orderBy: NEWEST or OLDEST), and PRIORITY: most urgent first, oldest
            # first within.
            Index(fields=("project_id", "id"), name="tasks_project_idx"),
            Index(fields=("project_id", "urgency", "id"), name="tasks_priority_idx"),
            # The reminder sweep: the rows due by now, soonest first.
            Index(fields=("remind_at",), name="tasks_remind_idx"),
        ]


class TaskComment(Model):
    task_id: int
    author_id: int
    id = fields.IntField(primary_key=True)
    task: fields.ForeignKeyRelation[Task] = fields.ForeignKeyField(
        "models.Task", related_name="comments", on_delete=fields.CASCADE
    )
    author: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="task_comments", on_delete=fields.RESTRICT
    )
    body = fields.TextField()
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "task_comments"
        # A task's comments page in id order, so id rides along: the page is read off the index.
        indexes = [Index(fields=("task_id", "id"), name="task_comments_task_idx")]
