from django.apps import AppConfig


class ChargersConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "chargers"
    verbose_name = "Charging stations"
