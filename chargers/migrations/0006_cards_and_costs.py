"""RFID cards with owners, tariffs and session costs: filled in by the cards and export work."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("chargers", "0005_roles")]

    operations = []
