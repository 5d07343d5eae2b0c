"""Roles for the dashboard (viewers see the stations, members also control them), and the
last published card of each station."""

from django.apps.registry import Apps
from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

# Copied, not imported: a migration keeps the names it was written with.
ROLES = ("viewers", "members")


def create_roles(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    group = apps.get_model("auth", "Group")
    for name in ROLES:
        group.objects.get_or_create(name=name)


def remove_roles(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    apps.get_model("auth", "Group").objects.filter(name__in=ROLES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("chargers", "0004_records_under_faults"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [
        migrations.RunPython(create_roles, remove_roles),
        migrations.AddField(
            model_name="station",
            name="live_status",
            field=models.JSONField(blank=True, default=dict, editable=False),
        ),
    ]
