"""Database steps about command rows: claimed once, in honest states.

A row is claimed with a compare-and-set from pending to sent, so that two
gateways (or a gateway and its restarted self) never both send it.
"""

from asgiref.sync import async_to_sync
from django.db.models import F
from django.utils import timezone

from chargers import live
from chargers.models import Command, Event

from .stations import log_event


def pending_for(station_id: int) -> list[Command]:
    pending = Command.objects.filter(station_id=station_id, status=Command.Status.PENDING)
    for row in pending.filter(expires_at__lt=timezone.now()):
        finish(row, Command.Status.EXPIRED, "not executed before it expired; nothing was sent")
    return list(pending.order_by("created_at", "id"))


def claim(row: Command, gateway_id: str) -> bool:
    """Pending to sent, only if nobody else took it meanwhile."""
    now = timezone.now()
    taken = Command.objects.filter(pk=row.pk, status=Command.Status.PENDING).update(
        status=Command.Status.SENT, attempts=F("attempts") + 1, sent_at=now, claimed_by=gateway_id
    )
    if taken:
        row.refresh_from_db()
        _tell(row)
    return bool(taken)


def in_flight(station_id: int) -> list[Command]:
    """Rows left "sent" by a gateway that stopped while they were on the way."""
    return list(Command.objects.filter(station_id=station_id, status=Command.Status.SENT))


def acknowledge(row: Command, reply: str) -> None:
    row.reply = reply[:200]
    row.save(update_fields=["reply"])


def finish(row: Command, status: Command.Status, reason: str) -> None:
    row.finish(status, reason)
    row.save()
    log_event(row.station_id, Event.Kind.COMMAND, f"`{row.wire}`: {status} ({reason})")
    _tell(row)


def retry_or_fail(row: Command, attempts: int, reason: str) -> None:
    if row.attempts >= attempts:
        finish(row, Command.Status.FAILED, f"gave up after {row.attempts} attempts: {reason}")
        return
    row.status = Command.Status.PENDING
    row.reason = reason[:300]
    row.save(update_fields=["status", "reason"])
    _tell(row)


def _tell(row: Command) -> None:
    """The browser that asked sees the outcome at once (these steps run in a sync thread)."""
    async_to_sync(live.publish_command)(row.station_id, row.pk, row.status, row.reason)
