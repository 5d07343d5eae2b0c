from django.urls import path

from . import export_views, views

app_name = "chargers"

urlpatterns = [
    path("", views.home, name="home"),
    path("sessions/export.csv", export_views.export_sessions, name="export_sessions"),
    path("sessions/totals.csv", export_views.export_totals, name="export_totals"),
]
