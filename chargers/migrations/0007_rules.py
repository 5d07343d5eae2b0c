"""Rules (time windows, charging windows, energy caps), overrides, the safe fallback,
and the rule that caused each command row."""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("chargers", "0006_cards_and_costs"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="Fallback",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("enabled", models.BooleanField(default=True)),
                ("timeout_s", models.PositiveIntegerField(default=60)),
                ("current_a", models.PositiveSmallIntegerField(default=6)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "station",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="fallback",
                        to="chargers.station",
                    ),
                ),
            ],
        ),
        migrations.CreateModel(
            name="Override",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "kind",
                    models.CharField(
                        choices=[
                            ("full speed", "full speed"),
                            ("pause", "pause charging"),
                            ("current", "charge at a set current"),
                        ],
                        max_length=16,
                    ),
                ),
                ("current_a", models.PositiveSmallIntegerField(blank=True, null=True)),
                (
                    "until",
                    models.DateTimeField(
                        blank=True, help_text="Empty: until unplugged.", null=True
                    ),
                ),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "ended_at",
                    models.DateTimeField(blank=True, help_text="Cancelled by a person.", null=True),
                ),
                (
                    "created_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "session",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        to="chargers.session",
                    ),
                ),
                (
                    "station",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="overrides",
                        to="chargers.station",
                    ),
                ),
            ],
            options={"ordering": ["-created_at", "-id"]},
        ),
        migrations.CreateModel(
            name="Rule",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("name", models.CharField(max_length=100)),
                (
                    "kind",
                    models.CharField(
                        choices=[
                            ("current", "current limit in a time window"),
                            ("window", "charging window (charging only inside it)"),
                            ("session cap", "energy cap per session"),
                            ("daily cap", "energy cap per day"),
                            ("weekly cap", "energy cap per week"),
                        ],
                        max_length=16,
                    ),
                ),
                (
                    "weekdays",
                    models.JSONField(blank=True, default=list, help_text="0 = Monday … 6 = Sunday"),
                ),
                (
                    "starts_at",
                    models.TimeField(
                        blank=True, help_text="Local time; empty: all day.", null=True
                    ),
                ),
                (
                    "ends_at",
                    models.TimeField(
                        blank=True,
                        help_text="Local time; before the start means the next day.",
                        null=True,
                    ),
                ),
                ("current_a", models.PositiveSmallIntegerField(blank=True, null=True)),
                (
                    "energy_kwh",
                    models.DecimalField(blank=True, decimal_places=3, max_digits=9, null=True),
                ),
                (
                    "priority",
                    models.IntegerField(
                        default=0,
                        help_text="A higher priority wins; among equals the lowest current wins.",
                    ),
                ),
                ("paused", models.BooleanField(default=False)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "card_owner",
                    models.ForeignKey(
                        blank=True,
                        help_text=(
                            "Daily or weekly caps: count this person's card sessions across "
                            "stations."
                        ),
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="energy_caps",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "created_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "site",
                    models.ForeignKey(
                        blank=True,
                        help_text="All stations of a site.",
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        to="chargers.site",
                    ),
                ),
                (
                    "stations",
                    models.ManyToManyField(blank=True, related_name="rules", to="chargers.station"),
                ),
            ],
            options={"ordering": ["-priority", "name", "id"]},
        ),
        migrations.AddField(
            model_name="command",
            name="rule",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="commands",
                to="chargers.rule",
            ),
        ),
    ]
