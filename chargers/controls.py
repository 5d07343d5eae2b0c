"""The dashboard's controls: one form per control, each turned into command rows,
or into an override where rules hold the station.

A form checks what the user typed against what this station allows, so that a
bad value is refused next to its field and nothing is queued. Which controls a
card shows follows the station's model (its capabilities from report 1).
"""

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django import forms
from django.db import transaction
from django.db.models import Max, Q
from django.utils import timezone

from chargers import services
from chargers.kecontact import commands as wire
from chargers.kecontact.errors import InvalidValue
from chargers.kecontact.products import Capability
from chargers.models import Command, Override, Station, Tag
from chargers.rules import schedules
from chargers.rules.forms import OverrideForm

# KEBA offers 6 A at the least, and a station's `Max curr` never exceeds 32 A.
MIN_CURRENT_A = 6
STATION_MAX_CURRENT_A = 32
MAX_ENERGY_KWH = Decimal("99999")  # `setenergy` takes at most 999999999 x 0.1 Wh
# KEBA: at least 300 s between two phase switches (PROTOCOL.md, x2).
PHASE_SWITCH_COOLDOWN = timedelta(seconds=300)
# Delay before a `currtime` limit applies: 1 s is the shortest the station takes.
CURRTIME_DELAY_S = 1


def max_current_a(station: Station) -> int:
    """What the station and its hardware allow now (`Curr HW`: DIP switches, cable)."""
    hardware = (station.live_status or {}).get("hardware_current_a") or 0
    if hardware >= MIN_CURRENT_A:
        return min(int(hardware), STATION_MAX_CURRENT_A)
    return STATION_MAX_CURRENT_A


class ControlForm(forms.Form):
    """A control of one station; `wires()` is what it sends once valid."""

    name = ""
    label = ""
    capability: Capability | None = None

    def __init__(self, station: Station, user: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("prefix", f"s{station.pk}-{self.name}")
        super().__init__(*args, **kwargs)
        self.station = station
        self.user = user

    @classmethod
    def applies_to(cls, station: Station) -> bool:
        return cls.capability is None or station.can(str(cls.capability))

    def wires(self) -> list[str]:
        raise NotImplementedError


class EnableForm(ControlForm):
    name, label = "enable", "Charging"
    on = forms.TypedChoiceField(
        label="Charging",
        choices=[("1", "Enable"), ("0", "Disable")],
        coerce=lambda v: v == "1",
    )

    def wires(self) -> list[str]:
        return [wire.enable(self.cleaned_data["on"]).wire]


class CurrentForm(ControlForm):
    name, label = "current", "Current"
    amps = forms.DecimalField(label="Current (A)", max_digits=6, decimal_places=3)

    def __init__(self, station: Station, user: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(station, user, *args, **kwargs)
        self.highest = max_current_a(station)
        field = self.fields["amps"]
        field.help_text = f"whole amperes, {MIN_CURRENT_A} to {self.highest} A"
        field.widget.attrs.update(min=MIN_CURRENT_A, max=self.highest, step=1)

    def clean_amps(self) -> Decimal:
        amps: Decimal = self.cleaned_data["amps"]
        if amps != amps.to_integral_value() or not MIN_CURRENT_A <= amps <= self.highest:
            raise forms.ValidationError(
                f"enter whole amperes from {MIN_CURRENT_A} to {self.highest} A "
                f"(this station allows no more than {self.highest} A now)"
            )
        return amps

    def wires(self) -> list[str]:
        amps = int(self.cleaned_data["amps"])
        # KEBA advises `currtime` (forgotten on unplug) over `curr` (kept until reboot,
        # and forcing three phases on newer x-series); a P20 knows only `curr`.
        if self.station.can(str(Capability.CURRENT_TIMER)):
            return [wire.set_current_timed(amps, CURRTIME_DELAY_S).wire]
        return [wire.set_current(amps).wire]


class EnergyForm(ControlForm):
    name, label, capability = "energy", "Energy cap", Capability.ENERGY_LIMIT
    kwh = forms.DecimalField(label="Energy cap for this session (kWh)", decimal_places=3)

    def __init__(self, station: Station, user: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(station, user, *args, **kwargs)
        self.fields["kwh"].widget.attrs.update(min="0.001", step="any")

    def clean_kwh(self) -> Decimal:
        kwh: Decimal = self.cleaned_data["kwh"]
        if not 0 < kwh <= MAX_ENERGY_KWH:
            raise forms.ValidationError(f"enter more than 0 and at most {MAX_ENERGY_KWH} kWh")
        return kwh

    def wires(self) -> list[str]:
        return [wire.set_energy(float(self.cleaned_data["kwh"])).wire]


def usable_cards(user: Any) -> list[Tag]:
    """Cards a user may start or stop with: staff any active card, members their own.

    Read once per request (kept on the user), however many cards show the choice."""
    cached: list[Tag] | None = getattr(user, "_kebaweb_cards", None)
    if cached is None:
        found = Tag.objects.filter(active=True).order_by("label", "tag")
        if not (user.is_staff or user.is_superuser):
            found = found.filter(owner_id=user.pk)
        cached = list(found)
        user._kebaweb_cards = cached
    return cached


class CardForm(ControlForm):
    capability = Capability.REMOTE_START
    card = forms.ChoiceField(label="RFID card")

    def __init__(self, station: Station, user: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(station, user, *args, **kwargs)
        self.cards = {str(tag.pk): tag for tag in usable_cards(user)}
        choices = [("", "choose a card")] + [(pk, str(tag)) for pk, tag in self.cards.items()]
        self.fields["card"].choices = choices  # type: ignore[attr-defined]

    def clean_card(self) -> Tag:
        return self.cards[self.cleaned_data["card"]]


class AuthoriseForm(CardForm):
    name, label = "authorise", "Authorise"

    def wires(self) -> list[str]:
        card: Tag = self.cleaned_data["card"]
        return [wire.start(card.tag, card.tag_class or "0" * 20).wire]


class StopForm(CardForm):
    name, label = "stop", "Stop"

    def wires(self) -> list[str]:
        return [wire.stop(self.cleaned_data["card"].tag).wire]


class UnlockForm(ControlForm):
    name, label = "unlock", "Unlock the socket"

    def wires(self) -> list[str]:
        return [wire.unlock().wire]


class DisplayForm(ControlForm):
    name, label, capability = "display", "Display text", Capability.DISPLAY
    text = forms.CharField(label="Text on the display", strip=False)

    def __init__(self, station: Station, user: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(station, user, *args, **kwargs)
        self.fields["text"].widget.attrs.update(maxlength=wire.MAX_DISPLAY_TEXT)
        self.fields["text"].help_text = f"at most {wire.MAX_DISPLAY_TEXT} characters, A-Z, 0-9"

    def clean_text(self) -> str:
        text: str = self.cleaned_data["text"]
        try:
            wire.display(text)
        except InvalidValue as exc:
            raise forms.ValidationError(str(exc)) from None
        return text

    def wires(self) -> list[str]:
        return [wire.display(self.cleaned_data["text"]).wire]


def phase_switch_free_at(station_ids: list[int]) -> dict[int, datetime]:
    """When each station takes its next phase switch (absent: it may switch now)."""
    recent = (
        Command.objects.filter(
            station_id__in=station_ids,
            wire__startswith="x2 ",
            sent_at__gt=timezone.now() - PHASE_SWITCH_COOLDOWN,
        )
        .exclude(status__in=[Command.Status.REFUSED, Command.Status.PENDING])
        .values("station_id")
        .annotate(last=Max("sent_at"))
    )
    return {row["station_id"]: row["last"] + PHASE_SWITCH_COOLDOWN for row in recent}


class PhasesForm(ControlForm):
    name, label, capability = "phases", "Phases", Capability.PHASE_SWITCH
    phases = forms.TypedChoiceField(
        label="Phases", choices=[("1", "1 phase"), ("3", "3 phases")], coerce=int
    )
    free_at: datetime | None = None  # set by the page that shows the cool-down

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        free_at = phase_switch_free_at([self.station.pk]).get(self.station.pk)
        if free_at is not None:
            local = timezone.localtime(free_at)
            raise forms.ValidationError(
                f"the station allows one phase switch every 5 minutes: next at {local:%H:%M:%S}"
            )
        return data

    def wires(self) -> list[str]:
        sent = [wire.switch_phases(self.cleaned_data["phases"] == 3).wire]
        # `x2` works only while the switch listens to UDP (`x2src 4`).
        if (self.station.live_status or {}).get("x2_source") != 4:
            sent.insert(0, wire.set_phase_switch_source(4).wire)
        return sent


FORMS: dict[str, type[ControlForm]] = {
    form.name: form
    for form in (
        EnableForm,
        CurrentForm,
        EnergyForm,
        AuthoriseForm,
        StopForm,
        UnlockForm,
        DisplayForm,
        PhasesForm,
    )
}


# Under rules, these would be undone at the next poll (reconciliation): overrides instead.
RULED_BY_OVERRIDES = frozenset({EnableForm.name, CurrentForm.name})
OVERRIDES = {
    "full-speed": (Override.Kind.FULL_SPEED, "Full speed until unplugged"),
    "pause": (Override.Kind.PAUSE, "Pause charging"),
    "current": (Override.Kind.CURRENT, "Charge at a set current"),
}


class OverrideControl(OverrideForm):
    """An override from the dashboard: it beats the rules until its end or until the car
    leaves (issue 11). Which kind is the URL's to say, not the posted data's."""

    is_override = True

    def __init__(self, station: Station, user: Any, name: str, data: Any = None) -> None:
        kind, self.label = OVERRIDES[name]
        prefix = f"s{station.pk}-override-{name}"
        if data is not None:
            data = data.copy()
            data[f"{prefix}-kind"] = kind
        super().__init__(station, data, prefix=prefix)
        self.name, self.user = name, user
        self.fields["kind"].widget = forms.HiddenInput()
        if kind != Override.Kind.CURRENT:
            del self.fields["current_a"]
        if kind == Override.Kind.FULL_SPEED:
            self.fields["until"].widget = forms.HiddenInput()  # until unplugged


def forms_for(
    station: Station, user: Any, phase_free_at: datetime | None = None, ruled: bool = False
) -> list[forms.Form]:
    """The controls this station's model supports, empty and ready to render; where
    rules hold the station, overrides take the place of charging on/off and current."""
    found: list[forms.Form] = [
        form(station, user)
        for form in FORMS.values()
        if form.applies_to(station) and not (ruled and form.name in RULED_BY_OVERRIDES)
    ]
    for form in found:
        if isinstance(form, PhasesForm):
            form.free_at = phase_free_at
    if ruled:
        found[:0] = [OverrideControl(station, user, name) for name in OVERRIDES]
    return found


def bound_override(station: Station, user: Any, name: str, data: Any) -> OverrideControl | None:
    return OverrideControl(station, user, name, data) if name in OVERRIDES else None


def _open_overrides(station: Station, now: datetime) -> Any:
    return Override.objects.filter(station=station, ended_at=None).filter(
        Q(until=None) | Q(until__gt=now)
    )


def set_override(form: OverrideControl, now: datetime) -> Override:
    """Save the override and wake the gateway. The same override already in force is
    kept, so a form posted twice does no harm; any other ends, since the newest is the
    one in force and "End override" must leave none behind."""
    data = form.cleaned_data
    until = form.until_moment(now)
    with transaction.atomic():
        # Two posts at once for one station take turns (PostgreSQL; SQLite writes one at a time).
        Station.objects.select_for_update().filter(pk=form.station.pk).first()
        in_force = _open_overrides(form.station, now)
        same = in_force.filter(
            kind=data["kind"],
            current_a=data.get("current_a") if data["kind"] == Override.Kind.CURRENT else None,
            until=until,
            session=form.running if until is None else None,
        ).first()
        if same is not None:
            return same
        in_force.update(ended_at=now)
        return form.save(form.user, now)  # saving it wakes the gateway (rules.schedules)


def end_overrides(station: Station, now: datetime) -> int:
    """End what overrides the rules on this station; the rules hold again at once."""
    ended = _open_overrides(station, now).update(ended_at=now)
    if ended:
        schedules.wake_gateway()
    return int(ended)


def bound_form(station: Station, user: Any, name: str, data: Any) -> ControlForm | None:
    """The named control with what was posted; None when this station has no such control."""
    form = FORMS.get(name)
    if form is None or not form.applies_to(station):
        return None
    return form(station, user, data)


def queue(station: Station, form: ControlForm) -> list[Command]:
    """Queue the form's commands; the same command already waiting is not queued again,
    so a form posted twice (a double tap, a resent request) does no harm."""
    requested_by = form.user.get_username()
    rows = []
    for text in form.wires():
        waiting = Command.objects.filter(
            station=station,
            wire=text,
            status__in=[Command.Status.PENDING, Command.Status.SENT],
            expires_at__gt=timezone.now(),
        ).first()
        rows.append(waiting or services.queue_command(station, text, requested_by))
    return rows
