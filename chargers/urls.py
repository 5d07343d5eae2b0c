from django.urls import path

from . import export_views, views

app_name = "chargers"

urlpatterns = [
    path("", views.home, name="home"),
    path("stations/<int:pk>/", views.station, name="station"),
    path("stations/<int:pk>/session/", views.station_session, name="station_session"),
    path("stations/<int:pk>/controls/", views.station_controls, name="station_controls"),
    path("stations/<int:pk>/control/<slug:name>/", views.control, name="control"),
    # Before the next pattern: "end" is no kind of override.
    path("stations/<int:pk>/override/end/", views.override_end, name="override_end"),
    path("stations/<int:pk>/override/<slug:name>/", views.override, name="override"),
    path("sessions/", views.sessions, name="sessions"),
    path("sessions/export.csv", export_views.export_sessions, name="export_sessions"),
    path("sessions/totals.csv", export_views.export_totals, name="export_totals"),
]
