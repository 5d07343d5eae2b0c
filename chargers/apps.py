from django.apps import AppConfig


class ChargersConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "chargers"
    verbose_name = "Charging stations"

    def ready(self) -> None:
        # Modules that connect signal receivers, whichever process changes the rows.
        from chargers import socket_sessions  # noqa: F401
        from chargers.rules import schedules  # noqa: F401
