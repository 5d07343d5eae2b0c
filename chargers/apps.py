from django.apps import AppConfig


class ChargersConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "chargers"
    verbose_name = "Charging stations"

    def ready(self) -> None:
        from chargers.rules import schedules  # noqa: F401  (connects its signal receivers)
