"""Rules (time windows, charging windows, energy caps, overrides, fallback): filled in by the schedules work."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("chargers", "0006_cards_and_costs")]

    operations = []
