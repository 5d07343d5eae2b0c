"""Database steps about charging sessions: what users bill from.

The station's own log (reports 100-130) is the truth where the model keeps
one. Without a log (P20) a session is what was observed. Either way at most
one session of a station is open, and a session that spans a time nobody
watched is closed and marked incomplete instead of being guessed at.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from chargers.kecontact.codec import EndReason, SessionReport
from chargers.models import Event, Session, Station, Tag

from .stations import log_event

# Meter readings come in 0.1 Wh; anything closer than this is the same value.
ENERGY_EPSILON_KWH = 0.0005


def _tag_for(text: str | None, tag_class: str | None, seen_at: datetime) -> Tag | None:
    if not text:
        return None
    tag, _ = Tag.objects.get_or_create(
        tag=Tag.normalise(text),
        defaults={"tag_class": tag_class or "", "first_seen": seen_at},
    )
    tag.last_seen = seen_at
    tag.save(update_fields=["last_seen"])
    return tag


def finished_ids(station_id: int, from_id: int) -> set[int]:
    """KEBA ids of this station's sessions at or above `from_id` that are already final."""
    rows = Session.objects.filter(
        station_id=station_id, keba_session_id__gte=from_id, source=Session.Source.LOG
    )
    ids = rows.exclude(ended_at=None).values_list("keba_session_id", flat=True)
    return {session_id for session_id in ids if session_id is not None}


def record_log(
    station_id: int,
    entries: Sequence[SessionReport],
    received_at: datetime,
    boot_at: datetime | None,
    read_whole_gap: bool,
) -> int | None:
    """Store what the log says, newest first; returns the running session's row, if any.

    With `read_whole_gap` every entry back to the last one already stored was
    read, so an open row the log no longer lists ended while nobody watched."""
    with transaction.atomic():
        running: Session | None = None
        for entry in entries:
            if entry.is_empty:
                continue
            row = _record_log_entry(station_id, entry, received_at)
            if entry.is_running and running is None:
                running = row
        others = Session.objects.filter(station_id=station_id, ended_at=None)
        if running is not None:
            others = others.exclude(pk=running.pk)
        if read_whole_gap:
            listed = {entry.session_id for entry in entries if not entry.is_empty}
            for row in others.exclude(keba_session_id__in=listed):
                _close_unobserved(row, boot_at, received_at, "the station's log no longer lists it")
        return running.pk if running else None


def _record_log_entry(station_id: int, entry: SessionReport, received_at: datetime) -> Session:
    started = entry.started_at(received_at) or received_at
    tag = _tag_for(entry.rfid_tag, entry.rfid_class, started)
    fields: dict[str, Any] = {
        "energy_kwh": entry.session_energy_kwh or 0,
        "start_counter_kwh": entry.start_energy_kwh,
        "tag": tag,
    }
    row, created = Session.objects.select_for_update().get_or_create(
        station_id=station_id,
        keba_session_id=entry.session_id,
        defaults=fields
        | {
            "started_at": started,
            "source": Session.Source.LIVE,
            "owner_id": tag.owner_id if tag else None,
        },
    )
    if tag is not None and not created and row.tag_id != tag.pk:
        # The card is first known now: its owner today is its owner for this session.
        # Once recorded the owner stays, whoever holds the card later.
        fields["owner_id"] = tag.owner_id
    if created:
        # A session closed by estimate (at a reboot) must not overlap this one.
        Session.objects.filter(
            station_id=station_id, ended_at__gt=started, keba_session_id__lt=entry.session_id
        ).exclude(source=Session.Source.LOG).update(ended_at=started)
    if entry.is_running:
        if not created:
            Session.objects.filter(pk=row.pk).update(**fields)
        return row
    # A finished session: the station's log is the truth, and it fills any gap.
    row.started_at = started
    row.ended_at = entry.ended_at(received_at) or received_at
    row.end_reason = entry.reason
    row.source = Session.Source.LOG
    row.incomplete_reason = ""
    row.unobserved_from = row.unobserved_until = row.unobserved_energy_kwh = None
    for name, value in fields.items():
        setattr(row, name, value)
    row.save()
    return row


def _close_unobserved(
    row: Session,
    boot_at: datetime | None,
    now: datetime,
    why: str,
    unassigned_kwh: float | None = None,
) -> None:
    """Close a session that ended while nobody watched, with what was last seen of it."""
    station = Station.objects.only("last_contact").get(pk=row.station_id)
    last_seen = station.last_contact or row.started_at or now
    # A reboot ends a session; otherwise the last moment it was seen is all we know.
    ended = boot_at if boot_at is not None and last_seen < boot_at <= now else last_seen
    row.close(ended)
    row.mark_unobserved(
        last_seen,
        now,
        f"{why}: kebaweb did not watch the station from {_local(last_seen)} to {_local(now)}, "
        f"so this session's end and any energy after {row.energy_kwh:.3f} kWh are unknown",
    )
    row.unobserved_energy_kwh = unassigned_kwh
    row.save()


def _local(moment: datetime) -> str:
    return f"{timezone.localtime(moment):%Y-%m-%d %H:%M:%S}"


def close_at_reboot(station_id: int, boot_at: datetime, now: datetime) -> None:
    """The station restarted and forgot its running session: end it at the boot time
    with the last energy it reported (the flushed value)."""
    with transaction.atomic():
        closed = 0
        for row in Session.objects.select_for_update().filter(station_id=station_id, ended_at=None):
            row.close(min(boot_at, now))
            row.save()
            closed += 1
        message = f"the station restarted at {_local(boot_at)}"
        if closed:
            message += "; a running session was closed then with the last energy it reported"
        log_event(station_id, Event.Kind.REBOOT, message, at=now)


# Models without a session log (P20): sessions come from observation alone.


def open_observed(
    station_id: int,
    started_at: datetime,
    energy_kwh: float | None,
    total_kwh: float | None,
    unseen_since: datetime | None = None,
    why: str = "",
) -> int:
    energy = energy_kwh or 0.0
    row = Session(
        station_id=station_id,
        started_at=started_at,
        energy_kwh=energy,
        start_counter_kwh=None if total_kwh is None else total_kwh - energy,
    )
    if why:
        row.mark_unobserved(unseen_since, started_at, why)
    row.save()
    return row.pk


def close_observed(session_id: int, at: datetime, energy_kwh: float | None) -> None:
    row = Session.objects.get(pk=session_id)
    if row.ended_at is not None:
        return
    row.energy_kwh = max(row.energy_kwh, energy_kwh or 0.0)
    row.close(at, reason=EndReason.UNPLUGGED)
    row.save()


def resume_observed(
    station_id: int,
    car_connected: bool,
    energy_kwh: float | None,
    total_kwh: float | None,
    boot_at: datetime | None,
    now: datetime,
) -> int | None:
    """After the gateway did not watch a log-less station: continue, or close honestly.

    The session goes on only if the lifetime counter proves it: the session
    counter grew by exactly what the lifetime counter grew since last seen."""
    with transaction.atomic():
        station = Station.objects.get(pk=station_id)
        open_rows = list(
            Session.objects.select_for_update()
            .filter(station_id=station_id, ended_at=None)
            .order_by("started_at", "pk")
        )
        last_seen = station.last_contact
        grew = None
        if total_kwh is not None and station.total_energy_kwh is not None:
            grew = total_kwh - station.total_energy_kwh
        continues = (
            car_connected
            and len(open_rows) == 1
            and grew is not None
            and energy_kwh is not None
            and station.session_energy_kwh is not None
            and abs(energy_kwh - station.session_energy_kwh - grew) < 2 * ENERGY_EPSILON_KWH
            and (boot_at is None or last_seen is None or boot_at <= last_seen)
        )
        if continues:
            return open_rows[0].pk
        current = (energy_kwh or 0.0) if car_connected else 0.0
        unassigned = None if grew is None else max(0.0, grew - current)
        for row in open_rows:
            _close_unobserved(
                row, boot_at, now, "the car left or the station restarted", unassigned
            )
            unassigned = None  # counted once
        if not car_connected:
            return None
        why = (
            "plugged in before kebaweb saw it: its start is unknown"
            if last_seen is None
            else f"started while kebaweb did not watch the station (from {_local(last_seen)}): "
            "its start is unknown, its energy is the station's"
        )
        return open_observed(station_id, now, energy_kwh, total_kwh, last_seen, why)
