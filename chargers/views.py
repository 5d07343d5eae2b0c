"""Pages: thin functions that check the role, call one module, render a template."""

from django.contrib.auth import get_user_model
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Count, Sum
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from chargers import charts, controls, dashboard, roles, session_filters
from chargers.models import Command, Event, Station

SESSIONS_PER_PAGE = 25


def _refused(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    raise PermissionDenied


def _kiosk(request: HttpRequest) -> bool | None:
    """False for a user with a role, True for a kiosk reader, None for nobody allowed."""
    if roles.can_view(request.user):
        return False
    return True if roles.public_dashboard() else None


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """A card per station, complete on first render; the socket keeps it live."""
    kiosk = _kiosk(request)
    if kiosk is None:
        return _refused(request)
    with_controls = not kiosk and roles.can_control(request.user)
    fleet = dashboard.overview(request.GET.get("page"), request.GET.get("site"))
    context = {
        "cards": fleet.cards,
        "fleet": fleet,
        "kiosk": kiosk,
        "with_controls": with_controls,
    }
    # After the live connection came back, the page fetches the cards afresh.
    if request.GET.get("part") == "cards":
        return render(request, "chargers/_cards.html", context)
    return render(request, "chargers/home.html", context)


@require_GET
def station_session(request: HttpRequest, pk: int) -> HttpResponse:
    """The running session's card and owner: fetched when a frame says the session changed."""
    kiosk = _kiosk(request)
    if kiosk is None:
        return _refused(request)
    card = dashboard.station_card(pk, request.user, with_controls=False)
    if card is None:
        raise Http404
    return render(request, "chargers/_session.html", {"card": card, "kiosk": kiosk})


@roles.viewer_required
@require_GET
def station(request: HttpRequest, pk: int) -> HttpResponse:
    with_controls = roles.can_control(request.user)
    card = dashboard.station_card(pk, request.user, with_controls)
    if card is None:
        raise Http404
    power, current = charts.last_day(pk)
    context = {
        "card": card,
        "station": card.station,
        "with_controls": with_controls,
        "power_chart": power,
        "current_chart": current,
        "days": charts.energy_per_day(pk),
        "sessions": session_filters.visible_sessions(request.user)
        .filter(station_id=pk)
        .select_related("tag", "owner")[:10],
        "commands": Command.objects.filter(station_id=pk).order_by("-created_at", "-id")[:10],
        "events": Event.objects.filter(station_id=pk)[:15],
    }
    if request.GET.get("part") == "charts":
        return render(request, "chargers/_charts.html", context)
    return render(request, "chargers/station.html", context)


@roles.member_required
@require_GET
def station_controls(request: HttpRequest, pk: int) -> HttpResponse:
    """A card's controls, loaded when a member opens them (the dashboard stays light)."""
    card = dashboard.station_card(pk, request.user, with_controls=True)
    if card is None:
        raise Http404
    return render(request, "chargers/_controls.html", {"card": card})


@roles.member_required
@require_POST
def control(request: HttpRequest, pk: int, name: str) -> HttpResponse:
    """One control of one station: refused next to the field, or queued as command rows."""
    station = get_object_or_404(Station, pk=pk, enabled=True)
    form = controls.bound_form(station, request.user, name, request.POST)
    if form is None:
        raise Http404(f"{station.name} has no control {name!r}")
    queued = controls.queue(station, form) if form.is_valid() else []
    if queued and not request.headers.get("HX-Request"):
        return redirect("chargers:station", pk=pk)  # a reload does not post again
    context = {"form": form, "station": station, "queued": queued}
    return render(request, "chargers/_control.html", context)


def _override_row(request: HttpRequest, pk: int, oob: bool) -> str:
    """The card's override line as it is now, for htmx to swap in beside a form's reply."""
    card = dashboard.station_card(pk, request.user, with_controls=False)
    context = {"card": card, "with_controls": True, "kiosk": False, "oob": oob}
    return render(request, "chargers/_override_row.html", context).content.decode()


@roles.member_required
@require_POST
def override(request: HttpRequest, pk: int, name: str) -> HttpResponse:
    """Override the rules from the dashboard: refused next to the field, or saved."""
    station = get_object_or_404(Station, pk=pk, enabled=True)
    form = controls.bound_override(station, request.user, name, request.POST)
    if form is None:
        raise Http404(f"there is no override {name!r}")
    saved = controls.set_override(form, timezone.now()) if form.is_valid() else None
    if saved and not request.headers.get("HX-Request"):
        return redirect("chargers:home")  # a reload does not post again
    context = {"form": form, "station": station, "saved": saved}
    reply = render(request, "chargers/_override_control.html", context, status=200)
    if saved:
        reply.content += _override_row(request, pk, oob=True).encode()
    return reply


@roles.member_required
@require_POST
def override_end(request: HttpRequest, pk: int) -> HttpResponse:
    """End the override: the rules hold again. Posted twice, the second ends nothing."""
    station = get_object_or_404(Station, pk=pk, enabled=True)
    controls.end_overrides(station, timezone.now())
    if not request.headers.get("HX-Request"):
        return redirect("chargers:home")
    return HttpResponse(_override_row(request, pk, oob=False))


@roles.member_required
@require_GET
def sessions(request: HttpRequest) -> HttpResponse:
    """Members see their own cards' sessions, staff all: filtered, totalled, paginated."""
    form = session_filters.SessionFilterForm(request.GET)
    chosen = form.chosen()
    visible = session_filters.visible_sessions(request.user)
    found = session_filters.apply_session_filter(chosen, visible)
    totals = found.aggregate(count=Count("id"), energy_kwh=Sum("energy_kwh"))
    page = Paginator(
        found.select_related("station", "tag", "owner").order_by("-started_at", "-id"),
        SESSIONS_PER_PAGE,
    ).get_page(request.GET.get("page"))
    params = request.GET.copy()
    params.pop("page", None)
    context = {
        "page": page,
        "totals": totals,
        "form": form,
        "first_day": session_filters.FIRST_DAY.isoformat(),
        "last_day": session_filters.LAST_DAY.isoformat(),
        "station_options": session_filters.station_options(request.user, chosen.station_id),
        "owners": get_user_model().objects.filter(pk__in=visible.values("owner_id")),
        "query": params.urlencode(),
    }
    return render(request, "chargers/sessions.html", context)
