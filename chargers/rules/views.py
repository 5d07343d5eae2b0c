"""Pages for rules: list, create, edit, pause, delete; and each station's preview,
overrides and safe fallback. Thin: forms check, models and services act."""

from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from chargers.models import Fallback, Override, Rule, Station
from chargers.roles import member_required, viewer_required

from . import explain, preview
from .forms import FEW_STATIONS, FallbackForm, OverrideForm, RuleForm


@member_required
def rule_list(request: HttpRequest) -> HttpResponse:
    rules = Rule.objects.select_related("site", "card_owner").prefetch_related("stations")
    # A link per station while they are few; a car park finds its station by name.
    wanted = request.GET.get("station", "").strip()
    stations = Station.objects.filter(enabled=True).order_by("name").only("name")
    found = list(
        (stations.filter(name__icontains=wanted) if wanted else stations)[: FEW_STATIONS + 1]
    )
    context = {
        "rules": rules,
        "stations": found[:FEW_STATIONS],
        "more_stations": len(found) > FEW_STATIONS,
        "station_search": wanted or len(found) > FEW_STATIONS,
        "wanted": wanted,
    }
    return render(request, "chargers/rules/list.html", context)


def _form_context(form: RuleForm, rule: Rule | None) -> dict[str, object]:
    return {"form": form, "rule": rule, "time_zone": settings.TIME_ZONE}


@member_required
def rule_create(request: HttpRequest) -> HttpResponse:
    form = RuleForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        rule = form.save(commit=False)
        rule.created_by = request.user
        rule.save()
        form.save_m2m()
        rule.save()  # its schedule and the gateway see the stations too
        messages.success(request, f"Rule “{rule.name}” saved.")
        return redirect("rules:list")
    return render(request, "chargers/rules/form.html", _form_context(form, None))


@member_required
def rule_edit(request: HttpRequest, rule_id: int) -> HttpResponse:
    rule = get_object_or_404(Rule, pk=rule_id)
    form = RuleForm(request.POST or None, instance=rule)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, f"Rule “{rule.name}” saved.")
        return redirect("rules:list")
    return render(request, "chargers/rules/form.html", _form_context(form, rule))


@require_POST
@member_required
def rule_pause(request: HttpRequest, rule_id: int) -> HttpResponse:
    # The button says what it wants ("pause" or "resume"): posting it twice changes nothing more.
    rule = get_object_or_404(Rule, pk=rule_id)
    paused = request.POST.get("action") != "resume"
    if rule.paused != paused:
        rule.paused = paused
        rule.save()
    messages.success(request, f"Rule “{rule.name}” {'paused' if paused else 'in force again'}.")
    return redirect("rules:list")


@member_required
def rule_delete(request: HttpRequest, rule_id: int) -> HttpResponse:
    rule = Rule.objects.filter(pk=rule_id).first()
    if request.method == "POST":
        if rule is not None:
            rule.delete()
            messages.success(request, f"Rule “{rule.name}” deleted.")
        else:
            messages.info(request, "That rule was already deleted.")
        return redirect("rules:list")
    if rule is None:
        messages.info(request, "That rule was already deleted.")
        return redirect("rules:list")
    return render(request, "chargers/rules/delete.html", {"rule": rule})


def _station_page(
    request: HttpRequest,
    station: Station,
    override_form: OverrideForm | None = None,
    fallback_form: FallbackForm | None = None,
    status: int = 200,
) -> HttpResponse:
    now = timezone.now()
    rules = explain.for_station(station, now)
    spans = rules.timeline(now)
    fallback = Fallback.objects.filter(station=station).first()
    context = {
        "station": station,
        "now_text": explain.describe_state(rules.desired(now)),
        "days": preview.days(spans, now, explain.PREVIEW_DAYS),
        "svg_height": preview.height(explain.PREVIEW_DAYS),
        "spans": [(span, *preview.describe_limit(span.state)) for span in spans],
        "hours": range(0, 25, 6),
        "rules": station.rules.all(),
        "overrides": Override.objects.filter(station=station, ended_at=None).filter(
            created_at__gte=now - timedelta(days=7)
        ),
        "override_form": override_form or OverrideForm(station),
        "fallback": fallback,
        "fallback_form": fallback_form
        or FallbackForm(instance=fallback or Fallback(station=station, enabled=False)),
    }
    return render(request, "chargers/rules/station.html", context, status=status)


@viewer_required
def station_rules(request: HttpRequest, station_id: int) -> HttpResponse:
    return _station_page(request, get_object_or_404(Station, pk=station_id))


@require_POST
@member_required
def override_create(request: HttpRequest, station_id: int) -> HttpResponse:
    station = get_object_or_404(Station, pk=station_id)
    form = OverrideForm(station, request.POST)
    if not form.is_valid():
        return _station_page(request, station, override_form=form, status=400)
    override = form.save(request.user, timezone.now())
    messages.success(request, f"Override set: {override.get_kind_display()}.")
    return redirect("rules:station", station_id=station.pk)


@require_POST
@member_required
def override_end(request: HttpRequest, station_id: int, override_id: int) -> HttpResponse:
    ended = Override.objects.filter(pk=override_id, station_id=station_id, ended_at=None).update(
        ended_at=timezone.now()
    )
    if ended:
        Override.objects.get(pk=override_id).save()  # tells the gateway at once
    messages.success(request, "Override ended; the rules hold again.")
    return redirect("rules:station", station_id=station_id)


@require_POST
@member_required
def fallback_save(request: HttpRequest, station_id: int) -> HttpResponse:
    station = get_object_or_404(Station, pk=station_id)
    instance = Fallback.objects.filter(station=station).first() or Fallback(station=station)
    form = FallbackForm(request.POST, instance=instance)
    if not form.is_valid():
        return _station_page(request, station, fallback_form=form, status=400)
    form.save()
    messages.success(request, "Safe fallback saved; the gateway arms the station at its next poll.")
    return redirect("rules:station", station_id=station.pk)
