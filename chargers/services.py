"""What crosses models or reaches the stations; views, tasks and the admin call these.

Nothing here touches UDP: the gateway owns port 7090, so these functions write
command rows and ask the gateway through the channel layer (chargers.live).
"""

from datetime import timedelta
from typing import Any

from asgiref.sync import async_to_sync
from django.db import IntegrityError, transaction
from django.utils import timezone

from chargers import live
from chargers.kecontact.commands import parse_command
from chargers.models import Command, Station

COMMAND_LIFETIME = timedelta(minutes=10)
IDENTIFY_TIMEOUT_S = 8.0  # the client's own retries take up to about 5 s
DISCOVER_TIMEOUT_S = 15.0


class StationError(Exception):
    """A request about a station that cannot be carried out; the text says why."""


def queue_command(
    station: Station, wire: str, requested_by: str, lifetime: timedelta = COMMAND_LIFETIME
) -> Command:
    """Store a command for the gateway and wake it. Raises InvalidValue for bad text."""
    command = parse_command(wire)  # a typo is refused here, before anything is stored
    row = Command.objects.create(
        station=station,
        wire=command.wire,
        requested_by=requested_by,
        expires_at=timezone.now() + lifetime,
    )
    transaction.on_commit(lambda: _announce(row))
    return row


def _announce(row: Command) -> None:
    async_to_sync(live.publish_command)(row.station_id, row.pk, row.status, row.reason)
    async_to_sync(live.wake_gateway)(row.station_id)


def _ask(request: dict[str, Any], timeout_s: float) -> list[dict[str, Any]]:
    try:
        reply = async_to_sync(live.ask_gateway)(request, timeout_s)
    except live.GatewayUnavailable as exc:
        raise StationError(str(exc)) from None
    if not reply.get("ok"):
        raise StationError(str(reply.get("error", "the gateway gave no reason")))
    return list(reply.get("stations", []))


def identify(address: str) -> dict[str, Any]:
    """Report 1 of the station at `address`, read by the gateway."""
    (found,) = _ask({"type": "gateway.identify", "address": address}, IDENTIFY_TIMEOUT_S)
    if not found["udp_supported"]:
        raise StationError(f"{found['model_label']} at {address}: {found['note']}")
    if found["udp_enabled"] is False:
        raise StationError(
            f"the station at {address} answers, but its UDP interface is switched off: "
            "set DIP switch DSW1.3 to ON and restart the station"
        )
    return found


def discover(network: str = "") -> list[dict[str, Any]]:
    """Stations on the LAN (broadcast), or in `network` (a scan of each address)."""
    request = {"type": "gateway.discover", "network": network}
    return _ask(request, DISCOVER_TIMEOUT_S)


def register_station(name: str, address: str) -> Station:
    """Identify the station at `address` and store it; refuse duplicates clearly.

    Call it outside any transaction: the question to the station takes up to
    seconds, and only the save below needs one."""
    if transaction.get_connection().in_atomic_block:
        raise RuntimeError(
            "register_station asks a station over UDP: call it outside a transaction"
        )
    found = identify(address)
    existing = Station.objects.filter(serial=found["serial"]).first()
    if existing is not None:
        raise StationError(
            f"this station (serial {found['serial']}) is already registered as {existing}"
        )
    station = Station(name=name or found["model_label"] or address, address=address)
    station.take_identity(found)
    try:
        with transaction.atomic():
            station.save()
    except IntegrityError:
        raise StationError(f"another station already uses the address {address}") from None
    transaction.on_commit(lambda: async_to_sync(live.wake_gateway)(station.pk))
    return station
