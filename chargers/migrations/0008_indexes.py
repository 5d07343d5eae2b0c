"""Indexes for pages and the gateway over a year of data (issue 8): the admin's
commands by date, a station's recent commands and events, when each station last
went online or offline, and the running sessions."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("chargers", "0007_rules")]

    operations = [
        migrations.AddIndex(
            model_name="command",
            index=models.Index(fields=["created_at"], name="command_created"),
        ),
        migrations.AddIndex(
            model_name="command",
            index=models.Index(fields=["station", "created_at"], name="command_station_created"),
        ),
        migrations.AddIndex(
            model_name="event",
            index=models.Index(fields=["station", "at"], name="event_station_at"),
        ),
        migrations.AddIndex(
            model_name="event",
            index=models.Index(fields=["station", "kind", "at"], name="event_station_kind_at"),
        ),
        migrations.AddIndex(
            model_name="session",
            index=models.Index(
                fields=["station"], condition=models.Q(ended_at=None), name="session_running"
            ),
        ),
    ]
