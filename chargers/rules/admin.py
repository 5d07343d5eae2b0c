"""Rules, overrides and safe fallbacks in the admin; their django-q2 schedules are
under Django Q → Scheduled tasks, named "Rule boundary: rule #N"."""

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import ManyToManyField
from django.http import HttpRequest

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
    # A search box for the stations: a car park's 1,000 as options took 130 ms.
    autocomplete_fields = ("stations",)

    def formfield_for_manytomany(
        self, db_field: "ManyToManyField[Any, Any]", request: HttpRequest, **kwargs: Any
    ) -> forms.ModelMultipleChoiceField | None:
        # The search box rather than RuleForm's checklist, which suits the rules page.
        kwargs.pop("widget", None)
        return super().formfield_for_manytomany(db_field, request, **kwargs)


@admin.register(Override)
class OverrideAdmin(admin.ModelAdmin):
    list_display = ("station", "kind", "current_a", "until", "session", "created_by", "ended_at")
    list_select_related = ("station", "created_by")
    autocomplete_fields = ("station",)  # a search box: 1,000 stations as options took 70 ms
    raw_id_fields = ("session",)


@admin.register(Fallback)
class FallbackAdmin(admin.ModelAdmin):
    list_display = ("station", "enabled", "timeout_s", "current_a")
    list_select_related = ("station",)
    autocomplete_fields = ("station",)  # a search box: 1,000 stations as options took 100 ms
