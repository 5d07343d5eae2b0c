"""What an administrator does with RFID cards: give them to someone, start and stop with them.

Starting and stopping are command rows for the gateway (chargers.services), like
any other command: the station decides, the command's row says what it answered.
"""

from typing import Any

from django.db import transaction
from django.db.models import QuerySet

from chargers.kecontact.products import Capability
from chargers.models import Command, Event, Session, Station, Tag
from chargers.services import queue_command

BLOCKED_CARD = "blocked card"  # who asks to stop a blocked card's session


class CardError(Exception):
    """A request about a card that cannot be carried out; the text says why."""


def assign(cards: QuerySet[Tag], owner: Any) -> int:
    """Give cards to `owner`; returns how many changed hands.

    Sessions a card charged while it had no owner get the new owner too (nobody
    else could be billed for them); sessions recorded under an earlier owner keep it."""
    card_ids = list(cards.values_list("pk", flat=True))
    with transaction.atomic():
        chosen = Tag.objects.select_for_update().filter(pk__in=card_ids)
        unassigned = list(chosen.filter(owner=None).values_list("pk", flat=True))
        changed = chosen.exclude(owner=owner).update(owner=owner)
        Session.objects.filter(tag_id__in=unassigned, owner=None).update(owner=owner)
    return changed


def start_charging(card: Tag, station: Station, requested_by: str) -> Command:
    """`start <tag> <class>`: as if the card were held to the station's reader."""
    if not station.can(str(Capability.REMOTE_START)):
        label = station.model_label or "this station"
        raise CardError(f"{station.name}: {label} cannot start charging with a card over UDP")
    if not card.active:
        raise CardError(f"card {card.tag} is blocked: unblock it before starting with it")
    wire = f"start {card.tag} {card.tag_class or '0' * 20}"
    return queue_command(station, wire, requested_by)


def stop_charging(card: Tag, requested_by: str) -> Command:
    """`stop <tag>` on the station where a session started with this card is running."""
    running = (
        Session.objects.filter(tag=card, ended_at=None)
        .select_related("station")
        .order_by("-started_at")
        .first()
    )
    if running is None:
        raise CardError(f"no session started with card {card.tag} is running")
    return queue_command(running.station, f"stop {card.tag}", requested_by)


def stop_if_blocked(session_id: int) -> bool:
    """Queue `stop <tag>` once for a running session started with a blocked card.

    The gateway calls this whenever it records a running session. The station's
    own whitelist cannot be edited over UDP, so it may accept a card kebaweb has
    blocked; stopping the session is what kebaweb can do."""
    row = Session.objects.select_related("tag", "station").get(pk=session_id)
    card = row.tag
    if card is None or card.active or row.ended_at is not None:
        return False
    wire = f"stop {card.tag}"
    asked = Command.objects.filter(station_id=row.station_id, wire=wire, requested_by=BLOCKED_CARD)
    if row.started_at is not None and asked.filter(created_at__gte=row.started_at).exists():
        return False  # asked once for this session; the command's row tells the outcome
    with transaction.atomic():
        queue_command(row.station, wire, BLOCKED_CARD)
        Event.objects.create(
            station_id=row.station_id,
            kind=Event.Kind.BLOCKED_CARD,
            message=(
                f"card {card.tag}{f' ({card.label})' if card.label else ''} is blocked: "
                f"kebaweb asked the station to stop session #{row.keba_session_id or row.pk}, "
                "which started with it"
            )[:300],
        )
    return True


def block(cards: QuerySet[Tag]) -> int:
    """Block cards, and stop at once any session they are charging now."""
    # Ids first: the admin's queryset may be filtered by `active`, which this changes.
    card_ids = list(cards.values_list("pk", flat=True))
    with transaction.atomic():
        blocked = Tag.objects.filter(pk__in=card_ids, active=True).update(active=False)
        running = Session.objects.filter(tag_id__in=card_ids, ended_at=None)
        for session_id in list(running.values_list("pk", flat=True)):
            stop_if_blocked(session_id)
    return blocked
