"""People and teams. Users come from JWT claims; no passwords are stored."""

from tortoise import fields
from tortoise.indexes import Index
from tortoise.models import Model

from pulseboard.models.enums import Role


class User(Model):
    id = fields.IntField(primary_key=True)
    sub = fields.CharField(max_length=255, unique=True)
    email = fields.CharField(max_length=255)
    name = fields.CharField(max_length=200)
    role = fields.CharEnumField(Role, max_length=16, default=Role.MEMBER)
    # The `iat` of the newest token whose claims were written here: an older token never
    # overwrites what a newer one said (a stale admin token cannot restore a demoted user).
    claims_issued_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "users"


class Team(Model):
    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=200, unique=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "teams"


class TeamMember(Model):
    team_id: int
    user_id: int
    id = fields.IntField(primary_key=True)
    team: fields.ForeignKeyRelation[Team] = fields.ForeignKeyField(
        "models.Team", related_name="memberships", on_delete=fields.CASCADE
    )
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="team_memberships", on_delete=fields.CASCADE
    )
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "team_members"
        unique_together = (("team", "user"),)
        # The unique index leads with team_id; an agent's teams are looked up by user.
        indexes = [Index(fields=("user_id",), name="team_members_user_idx")]
