"""Forms for rules, overrides and the safe fallback; each error sits next to its field."""

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.db.models import F
from django.template.defaultfilters import pluralize
from django.utils import timezone
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

from chargers.models import Fallback, Override, Rule, Session, Station

from . import book
from .desired import Kind, RuleSpec

MIN_CURRENT_A = 6
STATION_MAX_CURRENT_A = 32  # `Max curr` never exceeds 32 A on any KEBA station
MAX_ENERGY_KWH = Decimal("99999")  # `setenergy` takes at most 999999999 x 0.1 Wh
FAILSAFE_MIN_S, FAILSAFE_MAX_S = 10, 600
FEW_STATIONS = 30  # more, and the checklist shows each site folded
WEEKDAYS = [
    ("0", "Mon"),
    ("1", "Tue"),
    ("2", "Wed"),
    ("3", "Thu"),
    ("4", "Fri"),
    ("5", "Sat"),
    ("6", "Sun"),
]
WINDOWED = (Kind.CURRENT.value, Kind.WINDOW.value)
PERIOD_CAPS = (Kind.DAILY_CAP.value, Kind.WEEKLY_CAP.value)
# Overlaps are checked on one plain week, in UTC: the question is "do the hours
# meet on a shared day", which no daylight saving shift changes.
REFERENCE_MONDAY = datetime(2025, 1, 6, tzinfo=UTC)
LARGEST_ID = 2**63 - 1  # a BigAutoField's, on SQLite and PostgreSQL


def _time_input() -> forms.TimeInput:
    return forms.TimeInput(attrs={"type": "time"}, format="%H:%M")


class StationChecklist(forms.CheckboxSelectMultiple):
    """The stations as checkboxes under their site, written in one pass from three
    columns: Django's option templates took 0.15 ms a station, 150 ms for a car
    park's 1,000.

    A site folds away unless it holds a chosen station, so a car park opens the
    site it wants instead of scrolling past every station."""

    def render(
        self, name: str, value: Any, attrs: dict[str, Any] | None = None, renderer: Any = None
    ) -> SafeString:
        chosen = {str(v) for v in value or ()}
        stations = self.choices.queryset.values_list(  # type: ignore[attr-defined]
            "pk", "name", "address", "site__name"
        )
        sites: dict[str | None, list[str]] = {}
        ticked: dict[str | None, int] = {}
        for pk, station, address, site in stations.order_by(
            F("site__name").asc(nulls_last=True), "name"
        ):
            check = " checked" if str(pk) in chosen else ""
            ticked[site] = ticked.get(site, 0) + bool(check)
            sites.setdefault(site, []).append(
                f'<label class="check"><input type="checkbox" name="{escape(name)}" '
                f'value="{pk}"{check}> {escape(station)} ({escape(address or "address unknown")})'
                "</label>"
            )
        few = sum(len(boxes) for boxes in sites.values()) <= FEW_STATIONS
        groups = [
            format_html(
                "<details{}><summary>{} ({} station{}{})</summary>{}</details>",
                " open" if few or ticked[site] else "",
                site or "No site",
                len(boxes),
                pluralize(len(boxes)),
                f", {ticked[site]} chosen" if ticked[site] else "",
                mark_safe("".join(boxes)),
            )
            for site, boxes in sites.items()
        ]
        element_id = (attrs or {}).get("id") or self.attrs.get("id") or ""
        return format_html('<div id="{}">{}</div>', element_id, mark_safe("".join(groups)))


class StationChoices(forms.ModelMultipleChoiceField):
    """Stations by their ids. An id no station can have is refused before the
    query: SQLite cannot even compare a number beyond 64 bits (OverflowError)."""

    def clean(self, value: Any) -> Any:
        for pk in value if isinstance(value, list | tuple) else ():
            if not (str(pk).isdecimal() and 0 < int(pk) <= LARGEST_ID):
                raise forms.ValidationError(
                    self.error_messages["invalid_choice"],
                    code="invalid_choice",
                    params={"value": pk},
                )
        return super().clean(value)


class RuleForm(forms.ModelForm):
    weekdays = forms.MultipleChoiceField(
        choices=WEEKDAYS,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="None ticked: every day.",
    )

    class Meta:
        model = Rule
        fields = [
            "name",
            "kind",
            "stations",
            "site",
            "card_owner",
            "weekdays",
            "starts_at",
            "ends_at",
            "current_a",
            "energy_kwh",
            "priority",
        ]
        labels = {"current_a": "Current (A)", "energy_kwh": "Energy cap (kWh)"}
        field_classes = {"stations": StationChoices}
        error_messages = {
            "stations": {
                "invalid_choice": "there is no station %(value)s: tick stations from the list"
            }
        }
        widgets = {
            "stations": StationChecklist,
            "starts_at": _time_input(),
            "ends_at": _time_input(),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        owner = self.fields["card_owner"]
        assert isinstance(owner, forms.ModelChoiceField)
        owner.queryset = get_user_model().objects.filter(is_active=True)
        if self.instance.pk:
            self.initial["weekdays"] = [str(d) for d in self.instance.weekdays]
        self.fields["current_a"].widget.attrs.update(
            min=MIN_CURRENT_A, max=STATION_MAX_CURRENT_A, step=1
        )

    def clean_weekdays(self) -> list[int]:
        return sorted(int(d) for d in self.cleaned_data["weekdays"])

    def clean_energy_kwh(self) -> Decimal | None:
        kwh: Decimal | None = self.cleaned_data.get("energy_kwh")
        if kwh is not None and not 0 < kwh <= MAX_ENERGY_KWH:
            raise forms.ValidationError(
                "a cap of 0 kWh would never let a car charge: enter more than 0 "
                f"and at most {MAX_ENERGY_KWH} kWh"
            )
        return kwh

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        kind = data.get("kind")
        starts, ends = data.get("starts_at"), data.get("ends_at")
        if kind in WINDOWED:
            if kind == Kind.WINDOW.value and (starts is None or ends is None):
                self.add_error("ends_at", "a charging window needs a start and an end time")
            elif (starts is None) != (ends is None):
                self.add_error("ends_at", "give both a start and an end time, or neither")
            elif starts is not None and starts == ends:
                self.add_error(
                    "ends_at",
                    "the end equals the start: for all day leave both empty; a window "
                    "that ends the next day ends earlier than it starts (22:00 to 06:00)",
                )
        if kind == Kind.CURRENT.value:
            amps = data.get("current_a")
            if amps is None or not MIN_CURRENT_A <= amps <= STATION_MAX_CURRENT_A:
                self.add_error(
                    "current_a",
                    f"a KEBA station offers whole amperes from {MIN_CURRENT_A} to "
                    f"{STATION_MAX_CURRENT_A} A; to stop charging use a charging window",
                )
        elif (
            kind is not None
            and kind not in WINDOWED
            and data.get("energy_kwh") is None
            and "energy_kwh" not in self.errors
        ):
            self.add_error("energy_kwh", "an energy cap needs its kWh")
        if data.get("card_owner") is not None and kind not in PERIOD_CAPS:
            self.add_error(
                "card_owner", "only a daily or weekly cap can count a person's card sessions"
            )
        stations = self._stations(data)
        if not stations and data.get("card_owner") is None:
            self.add_error("stations", "choose at least one station, or a site")
        if not self.errors and kind is not None:
            self._check_overlaps(data, stations)
        return data

    def _stations(self, data: dict[str, Any]) -> set[int]:
        ids = {s.pk for s in data.get("stations") or ()}
        if data.get("site") is not None:
            ids |= set(Station.objects.filter(site=data["site"]).values_list("pk", flat=True))
        return ids

    def _spec(self, data: dict[str, Any]) -> RuleSpec:
        draft = Rule(
            pk=self.instance.pk or 0,
            name=data.get("name") or "this rule",
            kind=data["kind"],
            weekdays=data.get("weekdays") or [],
            starts_at=data.get("starts_at"),
            ends_at=data.get("ends_at"),
            current_a=data.get("current_a"),
            energy_kwh=data.get("energy_kwh"),
            priority=data.get("priority") or 0,
        )
        return book.rule_spec(draft)

    def _check_overlaps(self, data: dict[str, Any], stations: set[int]) -> None:
        """Two rules of one kind and priority on one station would leave the winner to chance."""
        mine = self._spec(data)
        others = Rule.objects.filter(
            kind=data["kind"], priority=data.get("priority") or 0, paused=False
        ).exclude(pk=self.instance.pk)
        owner = data.get("card_owner")
        for other in others.prefetch_related("stations"):
            theirs = {s.pk for s in other.stations.all()}
            if other.site_id is not None:
                theirs |= set(
                    Station.objects.filter(site_id=other.site_id).values_list("pk", flat=True)
                )
            shared = Station.objects.filter(pk__in=stations & theirs).order_by("name")
            same_owner = owner is not None and other.card_owner_id == owner.pk
            if not shared and not same_owner:
                continue
            if data["kind"] in WINDOWED and not _meet(mine, book.rule_spec(other)):
                continue
            where = ", ".join(s.name for s in shared) or f"the cards of {owner}"
            self.add_error(
                "priority",
                f"overlaps {other} on {where} with the same priority {other.priority}: "
                "give one of them a higher priority, or change its days or hours",
            )
            return


def _meet(first: RuleSpec, second: RuleSpec) -> bool:
    start, end = REFERENCE_MONDAY, REFERENCE_MONDAY + timedelta(days=8)
    theirs = list(second.occurrences(start, end, UTC))
    return any(a < d and c < b for a, b in first.occurrences(start, end, UTC) for c, d in theirs)


class OverrideForm(forms.Form):
    kind = forms.ChoiceField(choices=Override.Kind.choices, label="Override")
    current_a = forms.IntegerField(label="Current (A)", required=False)
    until = forms.TimeField(
        label="Until (local time)",
        required=False,
        widget=_time_input(),
        help_text="Empty: until the car is unplugged.",
    )

    def __init__(self, station: Station, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.station = station
        self.running = (
            Session.objects.filter(station=station, ended_at=None).order_by("-started_at").first()
        )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("kind") == Override.Kind.CURRENT:
            amps = data.get("current_a")
            if amps is None or not MIN_CURRENT_A <= amps <= STATION_MAX_CURRENT_A:
                self.add_error(
                    "current_a",
                    f"enter whole amperes from {MIN_CURRENT_A} to {STATION_MAX_CURRENT_A} A",
                )
        if data.get("until") is None and self.running is None and "until" not in self.errors:
            self.add_error(
                "until", "no car is plugged in, so nothing marks its end: give an end time"
            )
        return data

    def until_moment(self, now: datetime) -> datetime | None:
        at: time | None = self.cleaned_data.get("until")
        if at is None:
            return None
        today: date = timezone.localtime(now).date()
        moment = book.local_instant(today, at)
        return moment if moment > now else book.local_instant(today + timedelta(days=1), at)

    def save(self, user: Any, now: datetime) -> Override:
        data = self.cleaned_data
        until = self.until_moment(now)
        return Override.objects.create(
            station=self.station,
            kind=data["kind"],
            current_a=data.get("current_a") if data["kind"] == Override.Kind.CURRENT else None,
            until=until,
            session=self.running if until is None else None,
            created_by=user,
            created_at=now,
        )


class FallbackForm(forms.ModelForm):
    class Meta:
        model = Fallback
        fields = ["enabled", "timeout_s", "current_a"]
        labels = {
            "enabled": "Safe fallback on",
            "timeout_s": "After (s) without kebaweb",
            "current_a": "Fall back to (A)",
        }
        help_texts = {
            "timeout_s": f"{FAILSAFE_MIN_S} to {FAILSAFE_MAX_S} s",
            "current_a": "0 stops charging, or 6 to 32 A",
        }

    def clean_timeout_s(self) -> int:
        seconds: int = self.cleaned_data["timeout_s"]
        poll = self.instance.station.poll_interval_s
        if not FAILSAFE_MIN_S <= seconds <= FAILSAFE_MAX_S:
            raise forms.ValidationError(
                f"KEBA accepts {FAILSAFE_MIN_S} to {FAILSAFE_MAX_S} s for the failsafe"
            )
        if seconds < 3 * poll:
            raise forms.ValidationError(
                f"at least {3 * poll} s: kebaweb talks to this station every {poll} s, and "
                "one missed poll must not make it fall back"
            )
        return seconds

    def clean_current_a(self) -> int:
        amps: int = self.cleaned_data["current_a"]
        if amps != 0 and not MIN_CURRENT_A <= amps <= STATION_MAX_CURRENT_A:
            raise forms.ValidationError(
                f"0 (stop charging) or {MIN_CURRENT_A} to {STATION_MAX_CURRENT_A} A"
            )
        return amps
