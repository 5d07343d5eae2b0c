"""Pages: thin functions that read models and render templates."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from chargers.models import Session, Station


def home(request: HttpRequest) -> HttpResponse:
    """Every station's latest status and the latest sessions, rendered on the server."""
    stations = Station.objects.filter(enabled=True).order_by("name")
    sessions = Session.objects.select_related("station", "tag")[:10]
    return render(request, "chargers/home.html", {"stations": stations, "sessions": sessions})
