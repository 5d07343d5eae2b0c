"""Indexes for pages over a year of data: filled in by the speed work."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("chargers", "0007_rules")]

    operations = []
