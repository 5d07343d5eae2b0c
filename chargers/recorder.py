"""Turns what polls observe into few database writes.

Polls happen in the event loop; `observe` decides there, in memory, which
readings are worth keeping (a significant change, or the heartbeat) and what
browsers should be told. `take` hands the batch over, and `write` stores it
in one transaction, so 200 stations polled every 5 s cost a few writes a second.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction

from chargers import cards, set_based
from chargers.kecontact.codec import Report2, Report3
from chargers.models import Event, Reading, Session, Station

STATION_FIELDS = [
    "state",
    "plug",
    "power_w",
    "session_energy_kwh",
    "total_energy_kwh",
    "offered_current_a",
    "uptime_s",
    "last_contact",
    "live_status",
]
# About 30 MB: a day of 200 stations charging, stored once the database works again.
MAX_WAITING_READINGS = 200_000
# Online and offline are the gateway's to say (stations.record_identity and
# record_missed_poll): a batch written a second late must not undo an offline.


@dataclass
class Observation:
    status: Report2
    meter: Report3
    at: datetime
    session_id: int | None  # the row of the session running now, which takes E pres
    rules: dict[str, Any] = field(default_factory=dict)  # what the card says of the rules


@dataclass
class Batch:
    readings: list[Reading] = field(default_factory=list)
    latest: dict[int, Observation] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.readings or self.latest)


class Recorder:
    def __init__(self, heartbeat_s: float) -> None:
        self.heartbeat = timedelta(seconds=heartbeat_s)
        self._batch = Batch()
        self._last_stored: dict[int, Reading] = {}
        self._last_published: dict[int, dict[str, Any]] = {}

    def observe(
        self,
        station_id: int,
        status: Report2,
        meter: Report3,
        at: datetime,
        session_id: int | None = None,
        rules: dict[str, Any] | None = None,
    ) -> bool:
        """Note one poll; True when the station's status changed (worth publishing).

        `session_id` names the one session row that E pres belongs to: no other
        open row may take this session's energy."""
        reading = Reading(
            station_id=station_id,
            at=at,
            state=status.state,
            plug=status.plug,
            power_w=meter.power_w,
            current_1_a=meter.current_1_a,
            current_2_a=meter.current_2_a,
            current_3_a=meter.current_3_a,
            voltage_1_v=meter.voltage_1_v,
            voltage_2_v=meter.voltage_2_v,
            voltage_3_v=meter.voltage_3_v,
            session_energy_kwh=meter.session_energy_kwh,
            total_energy_kwh=meter.total_energy_kwh,
            offered_current_a=status.offered_current_a,
        )
        previous = self._last_stored.get(station_id)
        if reading.differs_from(previous) or (previous and at - previous.at >= self.heartbeat):
            self._batch.readings.append(reading)
            self._last_stored[station_id] = reading
        self._batch.latest[station_id] = Observation(status, meter, at, session_id, rules or {})
        shown = status_payload(status, meter, session_id, rules)
        changed = self._last_published.get(station_id) != shown
        self._last_published[station_id] = shown
        return changed

    def forget(self, station_id: int) -> None:
        """The station went offline: its next status is news, even if unchanged."""
        self._last_published.pop(station_id, None)

    def take(self) -> Batch:
        batch, self._batch = self._batch, Batch()
        return batch

    def put_back(self, batch: Batch) -> None:
        """A batch that could not be written waits for the next flush; while the
        database stays down only the newest readings wait (memory is not the disk)."""
        readings = batch.readings + self._batch.readings
        self._batch.readings = readings[-MAX_WAITING_READINGS:]
        self._batch.latest = batch.latest | self._batch.latest


def status_payload(
    status: Report2,
    meter: Report3,
    session_id: int | None = None,
    rules: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What a dashboard card shows of a station (README: "Live updates"); `rules` is
    what the gateway's rule book says of it (chargers.rules.explain.card_fields)."""
    state = int(status.state) if status.state is not None else None
    return cards.describe(
        {
            "state": state,
            "state_label": Station.STATE_LABELS.get(state, "unknown") if state is not None else "",
            "plug": int(status.plug) if status.plug is not None else None,
            "car_connected": bool(status.plug and status.plug.car_connected),
            "enabled_sys": status.enabled_sys,
            "enabled_user": status.enabled_user,
            "auth_required": status.auth_required,
            "error_1": status.error_1,
            "error_2": status.error_2,
            "power_w": meter.power_w,
            "current_1_a": meter.current_1_a,
            "current_2_a": meter.current_2_a,
            "current_3_a": meter.current_3_a,
            "session_energy_kwh": meter.session_energy_kwh,
            "total_energy_kwh": meter.total_energy_kwh,
            "offered_current_a": status.offered_current_a,
            "hardware_current_a": status.hardware_current_a,
            "user_current_a": status.user_current_a,
            "timer_current_a": status.timer_current_a,
            "energy_limit_kwh": status.energy_limit_kwh,
            "x2_source": status.x2_source,
            "phases": status.phases,
            "session_id": session_id,
            "is_online": True,
        }
        | (rules or {})
    )


def offline_payload() -> dict[str, Any]:
    """What a card is told when its station stopped answering."""
    return {"is_online": False, "activity": "offline", "activity_text": "offline"}


def write(batch: Batch) -> None:
    """Store a batch in one transaction (synchronous: run it through sync_to_async)."""
    if not batch:
        return
    with transaction.atomic():
        ids = {reading.station_id for reading in batch.readings} | set(batch.latest)
        # Only what _changes compares: the rest is overwritten.
        stations = Station.objects.only("state", "plug").in_bulk(list(ids))
        # A station deleted meanwhile takes its unwritten readings with it.
        Reading.objects.bulk_create(r for r in batch.readings if r.station_id in stations)
        events: list[Event] = []
        station_rows: dict[int, dict[str, Any]] = {}
        energies: dict[int, dict[str, Any]] = {}
        for station_id, seen in batch.latest.items():
            station = stations.get(station_id)
            if station is None:
                continue  # deleted meanwhile
            events += _changes(station, seen)
            _apply(station, seen)
            station_rows[station_id] = {name: getattr(station, name) for name in STATION_FIELDS}
            if seen.session_id is not None and seen.meter.session_energy_kwh is not None:
                energies[seen.session_id] = {"energy_kwh": seen.meter.session_energy_kwh}
        # One statement each for all stations and all running sessions (bench/flush.py).
        set_based.update_rows(Station, STATION_FIELDS, station_rows)
        set_based.update_rows(Session, ["energy_kwh"], energies, where="ended_at IS NULL")
        Event.objects.bulk_create(events)


def _changes(station: Station, seen: Observation) -> list[Event]:
    # Coming back online is logged where the gateway identifies the station
    # again, which always comes before its polls.
    events = []
    status = seen.status
    if status.state is not None and station.state != status.state:
        message = f"state: {Station.STATE_LABELS.get(int(status.state), 'unknown')}"
        events.append(Event(station=station, at=seen.at, kind=Event.Kind.STATE, message=message))
    if status.plug is not None and station.plug != status.plug:
        message = f"plug: {status.plug.name.lower().replace('_', ' ')}"
        events.append(Event(station=station, at=seen.at, kind=Event.Kind.PLUG, message=message))
    return events


def _apply(station: Station, seen: Observation) -> None:
    status, meter = seen.status, seen.meter
    station.state = int(status.state) if status.state is not None else None
    station.plug = int(status.plug) if status.plug is not None else None
    station.power_w = meter.power_w
    station.session_energy_kwh = meter.session_energy_kwh
    station.total_energy_kwh = meter.total_energy_kwh
    station.offered_current_a = status.offered_current_a
    station.uptime_s = status.uptime_s
    station.last_contact = seen.at
    station.live_status = status_payload(status, meter, seen.session_id, seen.rules)
