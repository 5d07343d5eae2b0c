"""Stations, RFID tags, charging sessions, readings, commands and events.

Models carry the rules about their own data; what crosses models or talks to
stations lives in the gateway and services modules.
"""

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone

from chargers import costs
from chargers.kecontact.commands import normalise_tag
from chargers.kecontact.errors import InvalidValue


class Site(models.Model):
    name = models.CharField(max_length=100, unique=True)

    def __str__(self) -> str:
        return self.name


class Station(models.Model):
    name = models.CharField(max_length=100)
    # Empty while the station is being looked for: another station took its
    # address (a DHCP swap) and it has not answered at a new one yet.
    address = models.GenericIPAddressField(protocol="IPv4", unique=True, null=True, blank=True)
    last_known_address = models.GenericIPAddressField(protocol="IPv4", null=True, blank=True)
    serial = models.CharField(max_length=32, unique=True, null=True, blank=True)
    product = models.CharField(max_length=64, blank=True)
    model_label = models.CharField(max_length=64, blank=True)
    firmware = models.CharField(max_length=100, blank=True)
    capabilities = models.JSONField(default=list, blank=True)
    site = models.ForeignKey(Site, null=True, blank=True, on_delete=models.SET_NULL)
    enabled = models.BooleanField(default=True, help_text="Poll this station.")
    poll_interval_s = models.PositiveIntegerField(
        default=10, help_text="Seconds between polls of report 2 and 3; at least 5."
    )
    is_online = models.BooleanField(default=False)
    last_contact = models.DateTimeField(null=True, blank=True)
    missed_polls = models.PositiveIntegerField(default=0)
    # The latest status, kept here so pages render without a query per reading.
    state = models.IntegerField(null=True, blank=True)
    plug = models.IntegerField(null=True, blank=True)
    power_w = models.FloatField(null=True, blank=True)
    session_energy_kwh = models.FloatField(null=True, blank=True)
    total_energy_kwh = models.FloatField(null=True, blank=True)
    offered_current_a = models.FloatField(null=True, blank=True)
    uptime_s = models.BigIntegerField(null=True, blank=True)
    # The dashboard card's fields as last published (recorder.status_payload), so
    # the first render says what the live frames say.
    live_status = models.JSONField(default=dict, blank=True, editable=False)
    # Which gateway polls the station, renewed while it runs: a station belongs
    # to exactly one gateway, so two never send the same command.
    gateway = models.CharField(max_length=200, blank=True)
    gateway_seen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.address or 'address unknown'})"

    def save(self, *args: object, **kwargs: object) -> None:
        # KEBA answers the same report no more often than every 5 s.
        self.poll_interval_s = max(5, self.poll_interval_s)
        super().save(*args, **kwargs)  # type: ignore[arg-type]

    def take_identity(self, found: dict[str, Any]) -> None:
        """What report 1 says, as the gateway describes a found station."""
        self.serial = found["serial"]
        self.product = found["product"]
        self.firmware = found["firmware"]
        self.model_label = found["model_label"]
        self.capabilities = found["capabilities"]

    def can(self, capability: str) -> bool:
        return capability in self.capabilities

    STATE_LABELS = {
        0: "starting",
        1: "not ready",
        2: "ready",
        3: "charging",
        4: "error",
        5: "interrupted",
    }

    @property
    def power_kw(self) -> float | None:
        return None if self.power_w is None else self.power_w / 1000

    @property
    def state_label(self) -> str:
        return self.STATE_LABELS.get(self.state, "unknown") if self.state is not None else "unknown"


@dataclass(frozen=True)
class TagSpelling:
    """What a typed card number was read as, in words for the form."""

    tag: str
    note: str


class Tag(models.Model):
    """An RFID card. Unknown cards seen in a session are stored unassigned.

    The station keeps its own whitelist, which UDP cannot read or edit: blocking a
    card here does not stop the station from accepting it, but kebaweb stops
    every session started with it at once."""

    tag = models.CharField(max_length=16, unique=True, help_text="16 hex digits")
    tag_class = models.CharField(max_length=20, blank=True)
    label = models.CharField(max_length=100, blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="cards",
    )
    active = models.BooleanField(
        default=True,
        help_text=(
            "Untick to block the card: kebaweb stops a session started with it within one "
            "poll. The station's own whitelist cannot be edited over UDP, so it still "
            "accepts the card; remove it there too."
        ),
    )
    notes = models.TextField(blank=True)
    first_seen = models.DateTimeField(null=True, blank=True)
    last_seen = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "RFID card"

    def __str__(self) -> str:
        return self.label or self.tag

    @staticmethod
    def normalise(text: str) -> str:
        return normalise_tag(text)

    @classmethod
    def understand(cls, text: str) -> TagSpelling:
        """A card number as typed: spaces, colons and lower case are fine, and so is the
        byte-reversed order phone NFC apps show when the card is already known that way.

        Raises InvalidValue when the text is not 8 bytes of hex."""
        tag = normalise_tag(text)
        digits = text.strip().replace(" ", "").replace(":", "")
        if digits.lower().startswith("0x"):
            digits = digits[2:]
        if len(digits) != 16:
            raise InvalidValue(
                f"a card number has 8 bytes (16 hex digits), got {len(digits) // 2} bytes"
                + (" and a half" if len(digits) % 2 else "")
            )
        reversed_tag = "".join(reversed([tag[i : i + 2] for i in range(0, 16, 2)]))
        if (
            reversed_tag != tag
            and not cls.objects.filter(tag=tag).exists()
            and cls.objects.filter(tag=reversed_tag).exists()
        ):
            return TagSpelling(
                reversed_tag,
                f"read {text.strip()!r} as {reversed_tag}: the byte-reversed order of a card "
                "the stations already reported (phone NFC apps show it that way)",
            )
        return TagSpelling(tag, f"read {text.strip()!r} as {tag}")

    def clean_fields(self, exclude: Collection[str] | None = None) -> None:
        # Normalise before the field checks, so "04 a1 b2 c3" is accepted and a bad
        # tag gets one clear error, not a second one from the length check.
        if not exclude or "tag" not in exclude:
            try:
                self.tag = self.normalise(self.tag)
            except InvalidValue as exc:
                raise ValidationError({"tag": str(exc)}) from None
        super().clean_fields(exclude=exclude)

    @property
    def is_assigned(self) -> bool:
        return bool(self.owner_id or self.label)

    @property
    def is_blocked(self) -> bool:
        return not self.active


class Session(models.Model):
    class Source(models.TextChoices):
        LIVE = "live", "live observation"
        LOG = "log", "station log"

    station = models.ForeignKey(Station, on_delete=models.CASCADE, related_name="sessions")
    keba_session_id = models.PositiveBigIntegerField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    energy_kwh = models.FloatField(default=0)
    start_counter_kwh = models.FloatField(null=True, blank=True)
    end_reason = models.IntegerField(null=True, blank=True)
    tag = models.ForeignKey(Tag, null=True, blank=True, on_delete=models.SET_NULL)
    # The card's owner when the session ran: giving the card to someone else
    # later must not move past sessions to their bill.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="charging_sessions",
    )
    # Priced once when the session ends; a later tariff change only applies
    # after an explicit "recalculate" in the admin.
    cost = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.LIVE)
    # What kebaweb could not see: set when a session spans a time when nobody
    # watched the station (gateway down, station rebooted) instead of inventing.
    incomplete_reason = models.CharField(max_length=300, blank=True)
    unobserved_from = models.DateTimeField(null=True, blank=True)
    unobserved_until = models.DateTimeField(null=True, blank=True)
    unobserved_energy_kwh = models.FloatField(
        null=True, blank=True, help_text="Charged while unobserved and not assignable to a session."
    )

    class Meta:
        ordering = ["-started_at", "-id"]
        # The sessions page and the export filter by date, station and owner.
        indexes = [
            models.Index(fields=["started_at"], name="session_started"),
            models.Index(fields=["station", "started_at"], name="session_station_started"),
            models.Index(fields=["owner", "started_at"], name="session_owner_started"),
            # The running sessions, which the dashboard reads for every station: few rows.
            models.Index(
                fields=["station"], condition=models.Q(ended_at=None), name="session_running"
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["station", "keba_session_id"], name="one_session_per_keba_id"
            )
        ]

    def __str__(self) -> str:
        return f"{self.station.name} #{self.keba_session_id or '?'}"

    @property
    def is_open(self) -> bool:
        return self.ended_at is None

    @property
    def is_complete(self) -> bool:
        return not self.incomplete_reason

    @property
    def duration(self) -> timedelta | None:
        if self.started_at is None:
            return None
        return (self.ended_at or timezone.now()) - self.started_at

    def close(self, at: datetime, reason: int | None = None) -> None:
        # Never before it started: clocks of station and server may disagree.
        self.ended_at = at if self.started_at is None else max(at, self.started_at)
        if reason is not None:
            self.end_reason = reason

    def mark_unobserved(self, since: datetime | None, until: datetime, why: str) -> None:
        self.unobserved_from, self.unobserved_until = since, until
        self.incomplete_reason = why[:300]

    def save(self, *args: Any, **kwargs: Any) -> None:
        # A session is priced once, when it is first saved closed; after that only
        # an explicit recalculation (the admin's action) changes its cost.
        if self.cost is None and self.ended_at is not None:
            self.price()
            if kwargs.get("update_fields") is not None:
                kwargs["update_fields"] = {*kwargs["update_fields"], "cost", "currency"}
        super().save(*args, **kwargs)

    def compute_cost(self) -> costs.Cost:
        """Its cost under today's tariffs, split by its readings; raises costs.CostError."""
        if self.started_at is None or self.ended_at is None:
            raise costs.CostError("the session has no start or has not ended")
        rules = [tariff.as_rule() for tariff in Tariff.objects.all()]
        if not rules:
            raise costs.NoTariff("no tariff is set up")
        readings = Reading.objects.filter(
            station_id=self.station_id,
            at__gt=self.started_at,
            at__lt=self.ended_at,
            session_energy_kwh__isnull=False,
        ).values_list("at", "session_energy_kwh")
        return costs.session_cost(
            rules,
            self.started_at,
            self.ended_at,
            self.energy_kwh,
            ((at, kwh) for at, kwh in readings if kwh is not None),
            timezone.get_default_timezone(),
        )

    def price(self) -> str:
        """Set the cost from the tariffs; the reason when it cannot be priced, else ""."""
        try:
            cost = self.compute_cost()
        except costs.CostError as exc:
            self.cost, self.currency = None, ""
            return str(exc)
        self.cost, self.currency = cost.amount, cost.currency
        return ""


class Tariff(models.Model):
    """A price per kWh from a date on, for the whole day or a time of day (local time).

    Tariffs with the same valid-from date form one price list; the newest list in
    force applies, so a new list from a date replaces the old one entirely."""

    name = models.CharField(max_length=100, blank=True)
    price_per_kwh = models.DecimalField(
        max_digits=8, decimal_places=4, validators=[MinValueValidator(Decimal(0))]
    )
    currency = models.CharField(
        max_length=3,
        default="EUR",
        validators=[RegexValidator(r"^[A-Z]{3}$", "a three-letter ISO code such as EUR")],
    )
    valid_from = models.DateField()
    starts_at = models.TimeField(
        null=True, blank=True, help_text="Local time this price starts; empty for all day."
    )
    ends_at = models.TimeField(
        null=True,
        blank=True,
        help_text="Local time it ends (may be after midnight, e.g. 22:00 to 06:00).",
    )

    class Meta:
        ordering = ["-valid_from", "starts_at"]

    def __str__(self) -> str:
        hours = f" {self.starts_at:%H:%M}-{self.ends_at:%H:%M}" if self.starts_at else ""
        return f"{self.price_per_kwh} {self.currency}/kWh from {self.valid_from}{hours}"

    def clean(self) -> None:
        if (self.starts_at is None) != (self.ends_at is None):
            raise ValidationError(
                {"ends_at": "give both a start and an end time, or neither for all day"}
            )
        if self.starts_at is not None and self.starts_at == self.ends_at:
            raise ValidationError({"ends_at": "the end time must differ from the start time"})

    def as_rule(self) -> costs.TariffRule:
        return costs.TariffRule(
            valid_from=self.valid_from,
            price_per_kwh=self.price_per_kwh,
            currency=self.currency,
            starts_at=self.starts_at,
            ends_at=self.ends_at,
        )


class Reading(models.Model):
    station = models.ForeignKey(Station, on_delete=models.CASCADE, related_name="readings")
    at = models.DateTimeField(db_index=True)
    state = models.IntegerField(null=True)
    plug = models.IntegerField(null=True)
    power_w = models.FloatField(null=True)
    current_1_a = models.FloatField(null=True)
    current_2_a = models.FloatField(null=True)
    current_3_a = models.FloatField(null=True)
    voltage_1_v = models.IntegerField(null=True)
    voltage_2_v = models.IntegerField(null=True)
    voltage_3_v = models.IntegerField(null=True)
    session_energy_kwh = models.FloatField(null=True)
    total_energy_kwh = models.FloatField(null=True)
    offered_current_a = models.FloatField(null=True)

    class Meta:
        ordering = ["-at"]
        indexes = [models.Index(fields=["station", "at"])]

    # What makes a reading worth storing before the heartbeat is due.
    SIGNIFICANT = ("state", "plug", "offered_current_a")

    def differs_from(self, other: "Reading | None") -> bool:
        if other is None:
            return True
        if any(getattr(self, f) != getattr(other, f) for f in self.SIGNIFICANT):
            return True
        # Power moves constantly; only a change of more than 5 % counts.
        before, now = other.power_w or 0.0, self.power_w or 0.0
        return abs(now - before) > max(50.0, 0.05 * max(before, now))


class RetentionProgress(models.Model):
    """How far thinning old readings got: each run walks only what became old since."""

    coarse_done_until = models.DateTimeField(null=True, blank=True)
    minute_done_until = models.DateTimeField(null=True, blank=True)
    coarse_minutes = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"readings thinned up to {self.minute_done_until or 'nothing yet'}"


class Command(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        ACKNOWLEDGED = "acknowledged"
        VERIFIED = "verified"
        REFUSED = "refused"
        FAILED = "failed"
        EXPIRED = "expired"

    # Acknowledged is final where no report can show the effect (display,
    # start, stop, unlock, or a field the model does not report).
    FINAL = (Status.VERIFIED, Status.ACKNOWLEDGED, Status.REFUSED, Status.FAILED, Status.EXPIRED)

    station = models.ForeignKey(Station, on_delete=models.CASCADE, related_name="commands")
    wire = models.CharField(max_length=120, help_text="The command as KEBA's guide writes it")
    requested_by = models.CharField(max_length=100, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    claimed_by = models.CharField(max_length=200, blank=True, help_text="The gateway that sent it")
    attempts = models.PositiveIntegerField(default=0)
    reply = models.CharField(max_length=200, blank=True)
    reason = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    # The rule whose reconciliation wrote this row (chargers/rules), for the audit.
    rule = models.ForeignKey(
        "Rule", null=True, blank=True, on_delete=models.SET_NULL, related_name="commands"
    )

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(fields=["status", "station"]),
            # The admin's list and date filter, and a station's recent commands.
            models.Index(fields=["created_at"], name="command_created"),
            models.Index(fields=["station", "created_at"], name="command_station_created"),
        ]

    def __str__(self) -> str:
        return f"{self.wire} → {self.station.name}: {self.status}"

    def finish(self, status: "Command.Status", reason: str = "") -> None:
        self.status = status
        self.reason = reason[:300]
        self.finished_at = timezone.now()


class Event(models.Model):
    class Kind(models.TextChoices):
        ONLINE = "online"
        OFFLINE = "offline"
        STATE = "state"
        PLUG = "plug"
        REBOOT = "reboot"
        MOVED = "moved"
        LOOKING = "looking"  # displaced from its address; looked for by serial
        STRANGER = "stranger"  # a datagram from elsewhere claimed to be this station
        ERROR = "error"
        COMMAND = "command"
        BLOCKED_CARD = "blocked card"  # a session started with a blocked card was stopped

    station = models.ForeignKey(Station, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(default=timezone.now, db_index=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    message = models.CharField(max_length=300)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [
            # A station's recent events, and when it last went online or offline
            # (the dashboard asks that of every station).
            models.Index(fields=["station", "at"], name="event_station_at"),
            models.Index(fields=["station", "kind", "at"], name="event_station_kind_at"),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.station.name}: {self.message}"


class Rule(models.Model):
    """A declarative rule: a current limit in a time window, a charging window or an
    energy cap. The gateway makes it hold (chargers/rules, chargers/gateway/enforcement.py)."""

    class Kind(models.TextChoices):
        CURRENT = "current", "current limit in a time window"
        WINDOW = "window", "charging window (charging only inside it)"
        SESSION_CAP = "session cap", "energy cap per session"
        DAILY_CAP = "daily cap", "energy cap per day"
        WEEKLY_CAP = "weekly cap", "energy cap per week"

    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    stations = models.ManyToManyField(Station, blank=True, related_name="rules")
    site = models.ForeignKey(
        Site, null=True, blank=True, on_delete=models.CASCADE, help_text="All stations of a site."
    )
    card_owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="energy_caps",
        help_text="Daily or weekly caps: count this person's card sessions across stations.",
    )
    weekdays = models.JSONField(default=list, blank=True, help_text="0 = Monday … 6 = Sunday")
    starts_at = models.TimeField(null=True, blank=True, help_text="Local time; empty: all day.")
    ends_at = models.TimeField(
        null=True, blank=True, help_text="Local time; before the start means the next day."
    )
    current_a = models.PositiveSmallIntegerField(null=True, blank=True)
    energy_kwh = models.DecimalField(max_digits=9, decimal_places=3, null=True, blank=True)
    priority = models.IntegerField(
        default=0, help_text="A higher priority wins; among equals the lowest current wins."
    )
    paused = models.BooleanField(default=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-priority", "name", "id"]

    def __str__(self) -> str:
        return f"{self.name} (#{self.pk})"


class Override(models.Model):
    """A manual override from the dashboard: it beats every rule until it expires
    or the car it was made for leaves."""

    class Kind(models.TextChoices):
        FULL_SPEED = "full speed", "full speed"
        PAUSE = "pause", "pause charging"
        CURRENT = "current", "charge at a set current"

    station = models.ForeignKey(Station, on_delete=models.CASCADE, related_name="overrides")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    current_a = models.PositiveSmallIntegerField(null=True, blank=True)
    until = models.DateTimeField(null=True, blank=True, help_text="Empty: until unplugged.")
    # The session it was made for: it ends when that car leaves.
    session = models.ForeignKey(Session, null=True, blank=True, on_delete=models.SET_NULL)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True, help_text="Cancelled by a person.")

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} on {self.station.name}"


class Fallback(models.Model):
    """The station's own safe fallback (`failsafe`): if kebaweb stops talking to it
    for `timeout_s`, it falls back to `current_a` by itself (0 stops charging)."""

    station = models.OneToOneField(Station, on_delete=models.CASCADE, related_name="fallback")
    enabled = models.BooleanField(default=True)
    timeout_s = models.PositiveIntegerField(default=60)
    current_a = models.PositiveSmallIntegerField(default=6)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.station.name}: {self.current_a} A after {self.timeout_s} s"
