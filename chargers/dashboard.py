"""What the dashboard and station pages show, read in a fixed number of queries.

However many stations there are, the dashboard costs the same few queries:
the counts, one page of stations with when they last went online or offline,
the running sessions with their cards and owners, the rule book and the energy
its caps count, and nothing per station.
"""

from dataclasses import dataclass, field
from typing import Any

from django.core.paginator import Page, Paginator
from django.db.models import Count, Max, OuterRef, Q, Subquery
from django.forms import Form
from django.utils import timezone

from chargers import cards
from chargers.controls import forms_for, phase_switch_free_at
from chargers.kecontact.codec import ChargingState
from chargers.models import Event, Session, Site, Station
from chargers.rules import book as rule_book
from chargers.rules import explain
from chargers.rules.desired import DesiredState


@dataclass
class Card:
    station: Station
    live: dict[str, Any]
    session: Session | None
    controls: list[Form] = field(default_factory=list)

    @property
    def owner_name(self) -> str:
        owner = getattr(self.session, "owner", None) if self.session else None
        return str(owner.get_full_name() or owner.get_username()) if owner else ""


def live_fields(station: Station) -> dict[str, Any]:
    """The last published card, or what the station row knows when nothing was published yet."""
    if station.live_status:
        payload = dict(station.live_status)
    else:
        payload = cards.describe(
            {
                "state": station.state,
                "plug": station.plug,
                "power_w": station.power_w,
                "session_energy_kwh": station.session_energy_kwh,
                "total_energy_kwh": station.total_energy_kwh,
                "offered_current_a": station.offered_current_a,
            }
        )
    payload["is_online"] = station.is_online
    if not station.is_online:
        payload.update(activity="offline", activity_text="offline")
    return payload


def stations_with_status() -> "Any":
    # MAX rather than ORDER BY at DESC LIMIT 1: SQLite then reads the index on
    # (station, kind, at), where the sorted form walked all of a station's events
    # (30 ms for a page of 24 stations with a year of events).
    changed = (
        Event.objects.filter(
            station=OuterRef("pk"), kind__in=[Event.Kind.ONLINE, Event.Kind.OFFLINE]
        )
        .order_by()
        .values("station")
        .annotate(last=Max("at"))
        .values("last")
    )
    return (
        Station.objects.filter(enabled=True)
        .annotate(online_changed_at=Subquery(changed))
        .order_by("name")
    )


def running_sessions(station_ids: list[int]) -> dict[int, Session]:
    running = (
        Session.objects.filter(station_id__in=station_ids, ended_at=None)
        .select_related("tag", "owner")
        .order_by("station_id", "-started_at", "-id")
    )
    found: dict[int, Session] = {}
    for session in running:
        found.setdefault(session.station_id, session)
    return found


def with_rules(payload: dict[str, Any], state: DesiredState | None) -> dict[str, Any]:
    """The card with what the rules say now, and its limit's source told again."""
    return cards.describe(payload | explain.card_fields(state or DesiredState()))


def _cards(stations: list[Station], book: rule_book.RuleBook) -> list[Card]:
    sessions = running_sessions([s.pk for s in stations])
    # Read now rather than from the last frame: a rule or override saved a moment
    # ago shows at once, whether or not the gateway has polled since.
    states = explain.desired_now(stations, sessions, timezone.now(), book)
    return [
        Card(s, with_rules(live_fields(s), states.get(s.pk)), sessions.get(s.pk)) for s in stations
    ]


# A car park's hundreds of stations do not belong on one phone screen.
CARDS_PER_PAGE = 24


@dataclass(frozen=True)
class Overview:
    """The fleet in numbers, and the page of cards being shown."""

    cards: list[Card]
    page: Page[Station]
    site: Site | None
    sites: list[Site]
    total: int
    online: int
    charging: int

    @property
    def offline(self) -> int:
        return self.total - self.online


def overview(page_number: str | None, site_id: str | None) -> Overview:
    """One page of cards (in a site, if asked), with counts for all: a few queries
    however many stations there are."""
    sites = list(Site.objects.order_by("name"))
    site = next((s for s in sites if str(s.pk) == site_id), None)
    stations = stations_with_status()
    if site is not None:
        stations = stations.filter(site=site)
    counts = stations.aggregate(
        total=Count("pk"),
        online=Count("pk", filter=Q(is_online=True)),
        charging=Count("pk", filter=Q(is_online=True, state=ChargingState.CHARGING)),
    )
    page = Paginator(stations, CARDS_PER_PAGE).get_page(page_number)
    cards = _cards(list(page.object_list), rule_book.load(None, timezone.now()))
    return Overview(cards, page, site, sites, **counts)


def station_card(station_id: int, user: Any, with_controls: bool) -> Card | None:
    station = stations_with_status().filter(pk=station_id).first()
    if station is None:
        return None
    book = rule_book.load([station.pk], timezone.now())
    (card,) = _cards([station], book)
    if with_controls:
        free_at = phase_switch_free_at([station.pk]).get(station.pk)
        ruled = bool(book.rules_for(station.pk))
        card.controls = forms_for(station, user, free_at, ruled)
    return card
