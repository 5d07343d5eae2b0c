"""Rules, overrides and safe fallbacks in the admin; their django-q2 schedules are
under Django Q → Scheduled tasks, named "Rule boundary: rule #N"."""

from django.contrib import admin

from chargers.models import Fallback, Override, Rule

from .forms import RuleForm


@admin.register(Rule)
class RuleAdmin(admin.ModelAdmin):
    form = RuleForm  # the same checks as the rules page
    list_display = (
        "name",
        "kind",
        "current_a",
        "energy_kwh",
        "starts_at",
        "ends_at",
        "priority",
        "paused",
    )
    list_filter = ("kind", "paused")
    search_fields = ("name",)
    filter_horizontal = ("stations",)


@admin.register(Override)
class OverrideAdmin(admin.ModelAdmin):
    list_display = ("station", "kind", "current_a", "until", "session", "created_by", "ended_at")
    list_select_related = ("station", "created_by")
    raw_id_fields = ("session",)


@admin.register(Fallback)
class FallbackAdmin(admin.ModelAdmin):
    list_display = ("station", "enabled", "timeout_s", "current_a")
