"""The admin: stations, their commands and events, sessions, tags and readings.

Thin, like the views: adding a station or a command goes through chargers.services,
which asks the gateway (the one owner of UDP port 7090) or writes a command row.
"""

import ipaddress
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

import chargers.card_admin  # noqa: F401 (registers RFID cards and tariffs)
from chargers import services, session_actions
from chargers.admin_lists import ByStation, GrowingList, StationFilter
from chargers.kecontact.codec import PlugState
from chargers.kecontact.errors import InvalidValue
from chargers.models import Command, Event, Reading, Session, Site, Station
from chargers.rules import admin as _rules_admin  # noqa: F401 (registers rules)

RECENT = 20  # rows of commands and events on a station's page


def _label(text: str) -> str:
    return text.lower().replace("_", " ")


# Stations


class AddStationForm(forms.ModelForm):
    name = forms.CharField(
        max_length=100, required=False, help_text="Optional: the station's model when empty."
    )

    class Meta:
        model = Station
        fields = ["name", "address"]
        help_texts = {
            "address": "The station's IPv4 address on your network; the gateway asks it "
            "who it is (report 1) before anything is stored."
        }

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.has_error("address") or self.has_error("name"):
            return data
        try:
            # No transaction is open here (see StationAdmin.changeform_view):
            # register_station asks the station first and then saves briefly.
            self.instance = services.register_station(data.get("name", ""), data["address"])
        except services.StationError as exc:
            self.add_error("address", str(exc))
        else:
            data["name"] = self.instance.name
        return data

    def validate_unique(self) -> None:
        # register_station refuses a station that is already registered, and says as what.
        pass


class DiscoverForm(forms.Form):
    network = forms.CharField(
        required=False,
        max_length=43,
        help_text="A network to scan address by address, e.g. 192.168.1.0/24. "
        "Empty: ask the whole LAN at once (broadcast).",
    )

    def clean_network(self) -> str:
        text = str(self.cleaned_data["network"]).strip()
        if not text:
            return ""
        try:
            return str(ipaddress.IPv4Network(text, strict=False))
        except ValueError:
            raise ValidationError(
                f"{text!r} is not an IPv4 network: write it like 192.168.1.0/24"
            ) from None


@admin.register(Station)
class StationAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "address",
        "model_label",
        "is_online",
        "state_label",
        "last_contact",
        "site",
    )
    list_filter = ("is_online", "site", "enabled")
    list_select_related = ("site",)
    list_per_page = 50  # rendering is most of such a page's time: 100 rows take 40 ms
    search_fields = ("name", "address", "serial")
    add_fieldsets = ((None, {"fields": ("name", "address")}),)
    # What the gateway reads from the station: shown, never edited here.
    identity = ("address", "serial", "product", "model_label", "firmware", "capability_list")
    latest_status = (
        "state_label",
        "plug_label",
        "power",
        "session_energy",
        "total_energy",
        "offered_current",
        "is_online",
        "last_contact",
    )
    fieldsets = (
        (None, {"fields": ("name", "site", "enabled", "poll_interval_s")}),
        ("Identity", {"fields": identity}),
        ("Latest status", {"fields": latest_status}),
    )
    readonly_fields = identity + latest_status
    # The newest commands and events are plain tables (change_form.html): read-only
    # inlines built a form per row, 20 ms for 40 rows.
    change_form_template = "admin/chargers/station/change_form.html"

    @admin.display(description="state")
    def state_label(self, station: Station) -> str:
        return station.state_label

    @admin.display(description="capabilities")
    def capability_list(self, station: Station) -> str:
        return ", ".join(_label(c) for c in station.capabilities) or "none known yet"

    @admin.display(description="plug")
    def plug_label(self, station: Station) -> str | None:
        if station.plug is None:
            return None
        try:
            return _label(PlugState(station.plug).name)
        except ValueError:
            return str(station.plug)

    @admin.display(description="power (W)")
    def power(self, station: Station) -> str | None:
        return None if station.power_w is None else f"{station.power_w:.0f}"

    @admin.display(description="session energy (kWh)")
    def session_energy(self, station: Station) -> str | None:
        value = station.session_energy_kwh
        return None if value is None else f"{value:.2f}"

    @admin.display(description="total energy (kWh)")
    def total_energy(self, station: Station) -> str | None:
        value = station.total_energy_kwh
        return None if value is None else f"{value:.2f}"

    @admin.display(description="offered current (A)")
    def offered_current(self, station: Station) -> str | None:
        value = station.offered_current_a
        return None if value is None else f"{value:g}"

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        if object_id is None and request.method == "POST":
            # Adding asks the station over UDP, which may take seconds. The admin
            # would do it inside its transaction, and SQLite's IMMEDIATE mode would
            # hold the write lock (the gateway's too) all that time.
            # The undecorated view Django's own changeform_view wraps in atomic().
            view = self._changeform_view  # type: ignore[attr-defined]
            response: HttpResponse = view(request, object_id, form_url, extra_context)
            return response
        return super().changeform_view(request, object_id, form_url, extra_context)

    def get_fieldsets(self, request: HttpRequest, obj: Station | None = None) -> Any:
        return self.add_fieldsets if obj is None else super().get_fieldsets(request, obj)

    def get_readonly_fields(self, request: HttpRequest, obj: Station | None = None) -> Any:
        return () if obj is None else super().get_readonly_fields(request, obj)

    def get_form(
        self, request: HttpRequest, obj: Station | None = None, change: bool = False, **kwargs: Any
    ) -> Any:
        if obj is None:
            kwargs["form"] = AddStationForm
        return super().get_form(request, obj, change, **kwargs)

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Station | None = None,
    ) -> HttpResponse:
        if obj is not None:
            context |= {
                "recent": RECENT,
                "recent_commands": obj.commands.order_by("-created_at", "-id")[:RECENT],
                "recent_events": obj.events.order_by("-at", "-id")[:RECENT],
            }
        return super().render_change_form(request, context, add, change, form_url, obj)

    def save_model(self, request: HttpRequest, obj: Station, form: Any, change: bool) -> None:
        # A new station was stored by register_station while the form was checked.
        if change:
            super().save_model(request, obj, form, change)

    def get_urls(self) -> list[URLPattern]:
        discover = path(
            "discover/",
            self.admin_site.admin_view(self.discover_view),
            name="chargers_station_discover",
        )
        return [discover, *super().get_urls()]

    def discover_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        if request.method == "POST" and "address" in request.POST:
            return self._add_found(request)
        form = DiscoverForm(request.POST or None)
        found: list[dict[str, Any]] | None = None
        if request.method == "POST":
            if form.is_valid():
                try:
                    found = services.discover(form.cleaned_data["network"])
                except services.StationError as exc:
                    messages.error(request, f"Discovery failed: {exc}")
                else:
                    found = _with_registered(found)
            else:
                for errors in form.errors.values():
                    messages.error(request, " ".join(str(e) for e in errors))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Discover stations",
            "form": form,
            "found": found,
        }
        return TemplateResponse(request, "admin/chargers/station/discover.html", context)

    def _add_found(self, request: HttpRequest) -> HttpResponse:
        name, address = request.POST.get("name", ""), request.POST.get("address", "")
        try:
            ipaddress.IPv4Address(address)
            station = services.register_station(name.strip(), address)
        except ValueError:
            messages.error(request, f"{address!r} is not an IPv4 address")
        except services.StationError as exc:
            messages.error(request, f"Could not add the station at {address}: {exc}")
        else:
            self.log_addition(request, station, [{"added": {}}])
            messages.success(request, f"Added {station}.")
            return HttpResponseRedirect(reverse("admin:chargers_station_changelist"))
        return HttpResponseRedirect(reverse("admin:chargers_station_discover"))


def _with_registered(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each found station with the Station it is already registered as, if any."""
    serials = [f["serial"] for f in found]
    addresses = [f["address"] for f in found]
    known = list(Station.objects.filter(Q(serial__in=serials) | Q(address__in=addresses)))
    by_serial = {s.serial: s for s in known}
    by_address = {s.address: s for s in known}
    return [
        f | {"station": by_serial.get(f["serial"]) or by_address.get(f["address"])} for f in found
    ]


# Commands


class AddCommandForm(forms.ModelForm):
    requested_by = ""  # the user, set by CommandAdmin.get_form for each request

    class Meta:
        model = Command
        fields = ["station", "wire"]
        help_texts = {"wire": "As KEBA's guide writes it, e.g. `curr 10000` for 10 A."}

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        station, wire = data.get("station"), data.get("wire")
        if station is None or not wire:
            return data
        try:
            self.instance = services.queue_command(station, wire, requested_by=self.requested_by)
        except InvalidValue as exc:
            self.add_error("wire", str(exc))
        else:
            data["wire"] = self.instance.wire
        return data


@admin.register(Command)
class CommandAdmin(ByStation, admin.ModelAdmin):
    list_display = (
        "created_at",
        "station",
        "wire",
        "status",
        "requested_by",
        "attempts",
        "reason",
        "finished_at",
    )
    # A date range, not date_hierarchy: its drill-down reads every row's date.
    list_filter = (
        "status",
        ("created_at", admin.DateFieldListFilter),
        ("station", StationFilter),
        "station__site",
    )
    list_select_related = ("station",)
    search_fields = ("station__name", "wire", "requested_by")
    ordering = ("-created_at", "-id")
    list_per_page = 50  # rendering is most of such a page's time: 100 rows take 40 ms
    autocomplete_fields = ("station",)  # a search box: 1,000 options took 150 ms to render

    def get_form(
        self, request: HttpRequest, obj: Command | None = None, change: bool = False, **kwargs: Any
    ) -> Any:
        if obj is None:

            class Form(AddCommandForm):
                requested_by = request.user.get_username()

            kwargs["form"] = Form
        return super().get_form(request, obj, change, **kwargs)

    def save_model(self, request: HttpRequest, obj: Command, form: Any, change: bool) -> None:
        # queue_command stored the row while the form was checked.
        if change:
            super().save_model(request, obj, form, change)

    def has_change_permission(self, request: HttpRequest, obj: Command | None = None) -> bool:
        # A command is a record of what was asked; ask again with a new one.
        return False


# Sessions, tags, events, readings, sites


class IncompleteFilter(admin.SimpleListFilter):
    title = "completeness"
    parameter_name = "complete"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("no", "incomplete (seen only in part)"), ("yes", "complete")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "no":
            return queryset.exclude(incomplete_reason="")
        if self.value() == "yes":
            return queryset.filter(incomplete_reason="")
        return queryset


@admin.register(Session)
class SessionAdmin(ByStation, admin.ModelAdmin):
    list_display = (
        "station",
        "keba_session_id",
        "started_at",
        "ended_at",
        "energy_kwh",
        "tag",
        "owner",
        "cost",
        "currency",
        "source",
        "is_complete",
    )
    list_filter = (
        ("started_at", admin.DateFieldListFilter),
        ("station", StationFilter),
        "station__site",
        "source",
        IncompleteFilter,
    )
    list_select_related = ("station", "tag", "owner")
    search_fields = ("station__name",)
    list_per_page = 50  # rendering is most of such a page's time: 100 rows take 40 ms
    # Search boxes, not a <select> of every card and person (300 cards took 30 ms).
    autocomplete_fields = ("tag", "owner")
    actions = [
        session_actions.export_csv,
        session_actions.export_csv_excel,
        session_actions.export_totals,
        session_actions.recalculate_costs,
    ]
    # The station's log is the truth; only who charged can be corrected here.
    readonly_fields = (
        "station",
        "keba_session_id",
        "started_at",
        "ended_at",
        "energy_kwh",
        "start_counter_kwh",
        "end_reason",
        "source",
        "incomplete_reason",
        "unobserved_from",
        "unobserved_until",
        "unobserved_energy_kwh",
        "cost",
        "currency",
    )

    @admin.display(boolean=True, description="complete")
    def is_complete(self, session: Session) -> bool:
        return session.is_complete

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows the gateway writes: to look at, not to edit."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Event)
class EventAdmin(ByStation, GrowingList, ReadOnlyAdmin):
    list_display = ("at", "station", "kind", "message")
    list_filter = (
        ("at", admin.DateFieldListFilter),
        "kind",
        ("station", StationFilter),
        "station__site",
    )
    list_select_related = ("station",)
    search_fields = ("station__name", "message")
    sortable_by = ("at",)  # the indexed order; any other sorts every row


@admin.register(Reading)
class ReadingAdmin(ByStation, GrowingList, ReadOnlyAdmin):
    list_display = (
        "at",
        "station",
        "state",
        "plug",
        "power_w",
        "session_energy_kwh",
        "total_energy_kwh",
        "offered_current_a",
    )
    list_filter = (("at", admin.DateFieldListFilter), ("station", StationFilter), "station__site")
    list_select_related = ("station",)
    search_fields = ("station__name",)
    sortable_by = ("at",)  # the indexed order; any other sorts millions of rows


@admin.register(Site)
class SiteAdmin(admin.ModelAdmin):
    list_display = ("name", "station_count")
    search_fields = ("name",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Site]:
        return super().get_queryset(request).annotate(stations=Count("station"))

    @admin.display(description="stations", ordering="stations")
    def station_count(self, site: Site) -> int:
        return int(getattr(site, "stations", 0))
