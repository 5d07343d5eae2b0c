"""Database steps about stations: which a gateway owns, who they are, where they are.

A station is its serial. An address only changes hands after report 1 read at
the new address shows the serial; nothing is deleted to resolve a clash.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from chargers.kecontact.client import FoundStation
from chargers.kecontact.codec import Report1
from chargers.models import Command, Event, Station


@dataclass(frozen=True)
class StationConfig:
    """What a worker needs to know of its station, refreshed by the periodic scan."""

    pk: int
    name: str
    serial: str | None
    address: str | None
    last_known_address: str | None
    poll_interval_s: int
    capabilities: frozenset[str]
    model_label: str

    def can(self, capability: str) -> bool:
        return capability in self.capabilities


def describe(found: FoundStation) -> dict[str, Any]:
    """A found station as plain values, for the admin and the command line."""
    report, info = found.report, found.report.product_info
    return {
        "address": found.host,
        "serial": report.serial,
        "product": report.product,
        "firmware": report.firmware,
        "model_label": info.label if info else "",
        "capabilities": sorted(str(c) for c in info.capabilities) if info else [],
        "udp_supported": info.udp_supported if info else True,
        "udp_enabled": report.udp_enabled,
        "note": info.note if info else "",
    }


def log_event(station_id: int, kind: str, message: str, at: datetime | None = None) -> None:
    Event.objects.create(
        station_id=station_id, kind=kind, message=message[:300], at=at or timezone.now()
    )


def owned_stations(
    site: str | None, gateway_id: str, lease: timedelta
) -> tuple[list[StationConfig], set[int]]:
    """Take the stations no other live gateway holds; return them and those with pending commands.

    One UPDATE renews this gateway's leases and takes free or abandoned stations."""
    now = timezone.now()
    stations = Station.objects.filter(enabled=True)
    if site is not None:
        stations = stations.filter(site__name=site)
    takeable = (
        Q(gateway="")
        | Q(gateway=gateway_id)
        | Q(gateway_seen_at__isnull=True)
        | Q(gateway_seen_at__lt=now - lease)
    )
    stations.filter(takeable).update(gateway=gateway_id, gateway_seen_at=now)
    mine = stations.filter(gateway=gateway_id)
    configs = [
        StationConfig(
            pk=row["pk"],
            name=row["name"],
            serial=row["serial"],
            address=row["address"],
            last_known_address=row["last_known_address"],
            poll_interval_s=max(5, row["poll_interval_s"]),
            capabilities=frozenset(row["capabilities"] or ()),
            model_label=row["model_label"],
        )
        for row in mine.values(
            "pk",
            "name",
            "serial",
            "address",
            "last_known_address",
            "poll_interval_s",
            "capabilities",
            "model_label",
        )
    ]
    pending = Command.objects.filter(status=Command.Status.PENDING, station__in=mine)
    return configs, set(pending.values_list("station_id", flat=True))


def release_stations(gateway_id: str) -> None:
    """A gateway that stops cleanly hands its stations over at once."""
    Station.objects.filter(gateway=gateway_id).update(gateway="", gateway_seen_at=None)


def record_identity(station_id: int, host: str, identity: Report1) -> bool:
    """The station answered report 1. Its last contact stays that of its last poll,
    so that what follows knows how long nobody watched it.

    False when the serial is another registered station's: two rows for one station."""
    twin = Station.objects.filter(serial=identity.serial).exclude(pk=station_id).first()
    if twin is not None:
        log_event(
            station_id,
            Event.Kind.ERROR,
            f"the station at {host} is serial {identity.serial}, already registered as "
            f"{twin.name}: delete one of the two in the admin",
        )
        return False
    station = Station.objects.get(pk=station_id)
    station.take_identity(describe(FoundStation(host, identity)))
    if not station.is_online:
        station.is_online = True
        log_event(station.pk, Event.Kind.ONLINE, "answers")
    station.missed_polls = 0
    station.save()
    return True


def record_missed_poll(station_id: int, offline_after: int) -> tuple[int, bool]:
    """Count a poll without answer; returns the missed polls in a row and whether online."""
    station = Station.objects.get(pk=station_id)
    station.missed_polls += 1
    if station.is_online and station.missed_polls >= offline_after:
        station.is_online = False
        log_event(station_id, Event.Kind.OFFLINE, f"no answer to {station.missed_polls} polls")
    station.save(update_fields=["missed_polls", "is_online"])
    return station.missed_polls, station.is_online


def claim_address(station_id: int, host: str, how: str) -> bool:
    """The station answers at `host` (report 1 showed its serial): it takes the address.

    A station that held the address is displaced, keeps all its history and is
    looked for by its serial. False when nothing changed."""
    with transaction.atomic():
        station = Station.objects.select_for_update().get(pk=station_id)
        if station.address == host:
            return False
        holder = Station.objects.select_for_update().filter(address=host).first()
        if holder is not None:
            holder.address, holder.last_known_address = None, host
            holder.save(update_fields=["address", "last_known_address"])
            log_event(
                holder.pk,
                Event.Kind.LOOKING,
                f"{station.name} (serial {station.serial}) now answers at {host}; "
                "looking for this station by its serial",
            )
        old = station.address
        station.address = station.last_known_address = host
        station.save(update_fields=["address", "last_known_address"])
        log_event(
            station.pk,
            Event.Kind.MOVED,
            f"moved from {old or 'an unknown address'} to {host} ({how})",
        )
        return True


def displace(station_id: int, host: str, found_serial: str) -> None:
    """Another station (or a stranger) answers at this station's address."""
    with transaction.atomic():
        station = Station.objects.select_for_update().get(pk=station_id)
        if station.address != host:
            return
        station.address, station.last_known_address = None, host
        station.is_online = False
        station.save(update_fields=["address", "last_known_address", "is_online"])
        log_event(
            station.pk,
            Event.Kind.LOOKING,
            f"station {found_serial} now answers at {host}; looking for this station by its serial",
        )


def record_stranger(serial: str, host: str, last_this_hour: bool = False) -> None:
    station = Station.objects.filter(serial=serial).first()
    if station is not None:
        message = (
            f"ignored datagrams from {host} that claim to be this station; kebaweb trusts "
            "an address only after asking it for report 1"
        )
        if last_this_hour:
            message += (
                ". So many addresses did this within the hour that the next ones are "
                "ignored without an event until the hour is over: look for the device "
                "on your network that sends them"
            )
        log_event(station.pk, Event.Kind.STRANGER, message)
