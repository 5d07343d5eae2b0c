"""Roles (viewers, members) for the dashboard: filled in by the dashboard work."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("chargers", "0004_records_under_faults")]

    operations = []
