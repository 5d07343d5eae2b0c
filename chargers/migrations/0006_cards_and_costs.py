"""RFID cards owned by users, the owner and cost of each session, tariffs."""

from decimal import Decimal

import django.core.validators
import django.db.models.deletion
from django.apps.registry import Apps
from django.conf import settings
from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor


def owners_to_users(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    """A text owner that names a user becomes that user; any other stays in the notes."""
    tag_model = apps.get_model("chargers", "Tag")
    user_model = apps.get_model(settings.AUTH_USER_MODEL)
    for tag in tag_model.objects.exclude(owner_name=""):
        user = user_model.objects.filter(username__iexact=tag.owner_name).first()
        if user is not None:
            tag.owner = user
        else:
            line = f"Owner before owners were accounts: {tag.owner_name}"
            tag.notes = f"{line}\n{tag.notes}" if tag.notes else line
        tag.save(update_fields=["owner", "notes"])


def users_to_owners(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    tag_model = apps.get_model("chargers", "Tag")
    for tag in tag_model.objects.exclude(owner=None).select_related("owner"):
        tag.owner_name = tag.owner.get_username()[:100]
        tag.save(update_fields=["owner_name"])


class Migration(migrations.Migration):
    dependencies = [
        ("chargers", "0005_roles"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterModelOptions(name="tag", options={"verbose_name": "RFID card"}),
        migrations.AddField(model_name="tag", name="notes", field=models.TextField(blank=True)),
        migrations.RenameField(model_name="tag", old_name="owner", new_name="owner_name"),
        migrations.AddField(
            model_name="tag",
            name="owner",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="cards",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.RunPython(owners_to_users, users_to_owners),
        migrations.RemoveField(model_name="tag", name="owner_name"),
        migrations.AlterField(
            model_name="tag",
            name="active",
            field=models.BooleanField(
                default=True,
                help_text=(
                    "Untick to block the card: kebaweb stops a session started with it within "
                    "one poll. The station's own whitelist cannot be edited over UDP, so it "
                    "still accepts the card; remove it there too."
                ),
            ),
        ),
        migrations.CreateModel(
            name="Tariff",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("name", models.CharField(blank=True, max_length=100)),
                (
                    "price_per_kwh",
                    models.DecimalField(
                        decimal_places=4,
                        max_digits=8,
                        validators=[django.core.validators.MinValueValidator(Decimal("0"))],
                    ),
                ),
                (
                    "currency",
                    models.CharField(
                        default="EUR",
                        max_length=3,
                        validators=[
                            django.core.validators.RegexValidator(
                                "^[A-Z]{3}$", "a three-letter ISO code such as EUR"
                            )
                        ],
                    ),
                ),
                ("valid_from", models.DateField()),
                (
                    "starts_at",
                    models.TimeField(
                        blank=True,
                        help_text="Local time this price starts; empty for all day.",
                        null=True,
                    ),
                ),
                (
                    "ends_at",
                    models.TimeField(
                        blank=True,
                        help_text=(
                            "Local time it ends (may be after midnight, e.g. 22:00 to 06:00)."
                        ),
                        null=True,
                    ),
                ),
            ],
            options={"ordering": ["-valid_from", "starts_at"]},
        ),
        migrations.AddField(
            model_name="session",
            name="cost",
            field=models.DecimalField(blank=True, decimal_places=2, max_digits=12, null=True),
        ),
        migrations.AddField(
            model_name="session",
            name="currency",
            field=models.CharField(blank=True, max_length=3),
        ),
        migrations.AddField(
            model_name="session",
            name="owner",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="charging_sessions",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AlterField(
            model_name="event",
            name="kind",
            field=models.CharField(
                choices=[
                    ("online", "Online"),
                    ("offline", "Offline"),
                    ("state", "State"),
                    ("plug", "Plug"),
                    ("reboot", "Reboot"),
                    ("moved", "Moved"),
                    ("looking", "Looking"),
                    ("stranger", "Stranger"),
                    ("error", "Error"),
                    ("command", "Command"),
                    ("blocked card", "Blocked Card"),
                ],
                max_length=16,
            ),
        ),
        migrations.AddIndex(
            model_name="session",
            index=models.Index(fields=["started_at"], name="session_started"),
        ),
        migrations.AddIndex(
            model_name="session",
            index=models.Index(fields=["station", "started_at"], name="session_station_started"),
        ),
        migrations.AddIndex(
            model_name="session",
            index=models.Index(fields=["owner", "started_at"], name="session_owner_started"),
        ),
    ]
