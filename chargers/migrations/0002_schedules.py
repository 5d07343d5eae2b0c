"""The django-q2 schedules the app needs, visible and editable in the admin."""

from datetime import UTC, datetime, time, timedelta

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps
from django_q.models import Schedule

THIN_READINGS = "Thin old readings"


def next_half_past_three(now: datetime) -> datetime:
    # A quiet hour: thinning deletes many rows while few people charge.
    run = datetime.combine(now.date(), time(3, 30), tzinfo=UTC)
    return run if run > now else run + timedelta(days=1)


def add_schedules(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    schedules = apps.get_model("django_q", "Schedule")
    schedules.objects.update_or_create(
        name=THIN_READINGS,
        defaults={
            "func": "chargers.tasks.thin_readings_task",
            "schedule_type": Schedule.DAILY,
            "repeats": -1,
            "next_run": next_half_past_three(datetime.now(UTC)),
        },
    )


def remove_schedules(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    apps.get_model("django_q", "Schedule").objects.filter(name=THIN_READINGS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
        ("chargers", "0001_initial"),
    ]

    operations = [migrations.RunPython(add_schedules, remove_schedules)]
