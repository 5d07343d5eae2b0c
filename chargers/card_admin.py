"""The admin's RFID cards and tariffs: who may charge, and what a kWh costs.

Starting, stopping and blocking go through chargers.rfid_cards, which writes
command rows for the gateway; nothing here talks to a station.
"""

from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.db.models import Aggregate, Count, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from chargers import rfid_cards
from chargers.kecontact.commands import normalise_tag
from chargers.kecontact.errors import InvalidValue
from chargers.models import Session, Station, Tag, Tariff

WHITELIST_NOTE = (
    "Stations keep their own list of allowed cards, which KEBA's UDP interface can neither "
    "read nor edit: a card blocked here is still accepted by a station that knows it, and "
    "kebaweb then stops the session it starts within one poll."
)


class CardForm(forms.ModelForm):
    # Longer than 16 so that "04 a1 b2 …" reaches clean_tag, which says what it read.
    tag = forms.CharField(
        max_length=64,
        help_text="8 bytes in hex, as the station shows it; spaces, colons and lower case "
        "are fine, and so is the byte-reversed order a phone's NFC app shows for a card "
        "the stations have already reported.",
    )
    tag_class = forms.CharField(
        max_length=64,
        required=False,
        label="Class",
        help_text="10 bytes in hex, sent with `start`; empty for none.",
    )

    class Meta:
        model = Tag
        fields = ["tag", "tag_class", "label", "owner", "active", "notes"]
        labels = {"active": "Active (not blocked)"}
        help_texts = {"active": WHITELIST_NOTE}

    understood = ""

    def clean_tag(self) -> str:
        try:
            spelling = Tag.understand(self.cleaned_data["tag"])
        except InvalidValue as exc:
            raise forms.ValidationError(str(exc)) from None
        other = Tag.objects.filter(tag=spelling.tag).exclude(pk=self.instance.pk).first()
        if other is not None:
            named = f" as {other.label!r}" if other.label else ""
            raise forms.ValidationError(
                f"{spelling.note}; that card is already registered{named}: edit it instead"
            )
        self.understood = spelling.note
        return spelling.tag

    def clean_tag_class(self) -> str:
        text = self.cleaned_data["tag_class"].strip()
        if not text:
            return ""
        try:
            return normalise_tag(text, 20, "the card's class")
        except InvalidValue as exc:
            raise forms.ValidationError(str(exc)) from None


class OwnerForm(forms.Form):
    owner = forms.ModelChoiceField(queryset=get_user_model().objects.order_by("username"))


class StationForm(forms.Form):
    station = forms.ModelChoiceField(
        queryset=Station.objects.filter(enabled=True).exclude(address=None),
        help_text="The station authorises charging as if the card were held to its reader.",
    )


class OwnerFilter(admin.SimpleListFilter):
    title = "owner"
    parameter_name = "owner"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        users = get_user_model().objects.filter(cards__isnull=False).distinct()
        return [("none", "unassigned")] + [
            (str(user.pk), user.get_full_name() or user.get_username())
            for user in users.order_by("username")
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Tag]) -> QuerySet[Tag]:
        if self.value() == "none":
            return queryset.filter(owner=None)
        if (self.value() or "").isdigit():
            return queryset.filter(owner_id=int(self.value() or 0))
        return queryset


class SeenFilter(admin.SimpleListFilter):
    title = "seen"
    parameter_name = "seen"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("7", "in the last 7 days"), ("30", "in the last 30 days"), ("never", "never")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Tag]) -> QuerySet[Tag]:
        if self.value() == "never":
            return queryset.filter(last_seen=None, session=None)
        if self.value() in ("7", "30"):
            since = timezone.now() - timedelta(days=int(self.value() or 0))
            return queryset.filter(last_seen__gte=since)
        return queryset


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):
    form = CardForm
    list_display = (
        "tag",
        "label",
        "owner",
        "active",
        "first_seen",
        "last_seen",
        "session_count",
        "energy",
    )
    list_filter = (OwnerFilter, "active", SeenFilter)
    list_select_related = ("owner",)
    list_per_page = 50  # rendering is most of such a page's time: 100 rows take 40 ms
    search_fields = ("tag", "label", "owner__username", "owner__first_name", "owner__last_name")
    readonly_fields = ("first_seen", "last_seen", "session_count", "energy")
    actions = ["assign_owner", "start_charging", "stop_charging", "block", "unblock"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Tag]:
        # A subquery per card, not a join grouped over every session (100,000 took
        # 130 ms): the database runs it for the page's cards only, and the count
        # leaves it out.
        return (
            super()
            .get_queryset(request)
            .annotate(
                sessions=Coalesce(_per_card(Count("pk")), 0),
                energy_kwh=_per_card(Sum("energy_kwh")),
            )
        )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Tag], search_term: str
    ) -> tuple[QuerySet[Tag], bool]:
        found, duplicates = super().get_search_results(request, queryset, search_term)
        try:
            spelling = Tag.understand(search_term)
        except InvalidValue:
            return found, duplicates
        # "04:a1:b2:…" finds the card too, in any spelling the form accepts.
        return found | queryset.filter(Q(tag=spelling.tag)), duplicates

    @admin.display(description="sessions", ordering="sessions")
    def session_count(self, card: Tag) -> int:
        return int(getattr(card, "sessions", 0))

    @admin.display(description="energy kWh", ordering="energy_kwh")
    def energy(self, card: Tag) -> str:
        return f"{getattr(card, 'energy_kwh', None) or 0:.3f}"

    def save_model(self, request: HttpRequest, obj: Tag, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if getattr(form, "understood", "") and "tag" in form.changed_data:
            messages.info(request, form.understood)

    def _ask(
        self,
        request: HttpRequest,
        queryset: QuerySet[Tag],
        form: forms.Form,
        action: str,
        intro: str,
        submit: str,
    ) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": submit,
            "intro": intro,
            "submit": submit,
            "form": form,
            "action": action,
            "cards": queryset,
        }
        return TemplateResponse(request, "admin/chargers/tag/action_form.html", context)

    @admin.action(description="Assign the selected cards to an owner")
    def assign_owner(self, request: HttpRequest, queryset: QuerySet[Tag]) -> HttpResponse | None:
        form = OwnerForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            owner = form.cleaned_data["owner"]
            changed = rfid_cards.assign(queryset, owner)
            messages.success(request, f"{changed} card(s) now belong to {owner}.")
            return None
        intro = (
            "Give these cards to one person. Sessions they charged while unassigned go to "
            "that person too; sessions recorded under an earlier owner stay with them."
        )
        return self._ask(request, queryset, form, "assign_owner", intro, "Assign")

    @admin.action(description="Authorise charging on a station with the selected card (start)")
    def start_charging(self, request: HttpRequest, queryset: QuerySet[Tag]) -> HttpResponse | None:
        if queryset.count() != 1:
            messages.error(request, "Choose exactly one card to start charging with.")
            return None
        card = queryset.get()
        form = StationForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            try:
                row = rfid_cards.start_charging(card, form.cleaned_data["station"], _who(request))
            except (rfid_cards.CardError, InvalidValue) as exc:
                form.add_error("station", str(exc))
            else:
                messages.success(request, f"Queued `{row.wire}` for {row.station.name}.")
                return None
        intro = f"Start charging with card {card} on a station."
        return self._ask(request, queryset, form, "start_charging", intro, "Start charging")

    @admin.action(description="Stop the session started with the selected cards (stop)")
    def stop_charging(self, request: HttpRequest, queryset: QuerySet[Tag]) -> None:
        for card in queryset:
            try:
                row = rfid_cards.stop_charging(card, _who(request))
            except rfid_cards.CardError as exc:
                messages.warning(request, str(exc))
            else:
                messages.success(request, f"Queued `{row.wire}` for {row.station.name}.")

    @admin.action(description="Block the selected cards (stops their running sessions)")
    def block(self, request: HttpRequest, queryset: QuerySet[Tag]) -> None:
        blocked = rfid_cards.block(queryset)
        messages.success(request, f"{blocked} card(s) blocked. {WHITELIST_NOTE}")

    @admin.action(description="Unblock the selected cards")
    def unblock(self, request: HttpRequest, queryset: QuerySet[Tag]) -> None:
        count = queryset.filter(active=False).update(active=True)
        messages.success(request, f"{count} card(s) unblocked.")


def _per_card(aggregate: Aggregate) -> Subquery:
    sessions = Session.objects.filter(tag=OuterRef("pk")).order_by().values("tag")
    return Subquery(sessions.annotate(value=aggregate).values("value"))


def _who(request: HttpRequest) -> str:
    return f"admin {request.user.get_username()}"[:100]


@admin.register(Tariff)
class TariffAdmin(admin.ModelAdmin):
    list_display = ("valid_from", "starts_at", "ends_at", "price_per_kwh", "currency", "name")
    list_filter = ("currency",)
    ordering = ("-valid_from", "starts_at")
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "name",
                    "price_per_kwh",
                    "currency",
                    "valid_from",
                    "starts_at",
                    "ends_at",
                ],
                "description": "Tariffs with the same valid-from date form one price list; the "
                "newest list in force applies. A closed session keeps the cost it got when it "
                "ended: use “Recalculate costs” on the sessions to apply a changed tariff.",
            },
        )
    ]
