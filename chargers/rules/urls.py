from django.urls import path

from . import views

app_name = "rules"

urlpatterns = [
    path("", views.rule_list, name="list"),
    path("new/", views.rule_create, name="create"),
    path("<int:rule_id>/", views.rule_edit, name="edit"),
    path("<int:rule_id>/pause/", views.rule_pause, name="pause"),
    path("<int:rule_id>/delete/", views.rule_delete, name="delete"),
    path("station/<int:station_id>/", views.station_rules, name="station"),
    path("station/<int:station_id>/override/", views.override_create, name="override"),
    path(
        "station/<int:station_id>/override/<int:override_id>/end/",
        views.override_end,
        name="override_end",
    ),
    path("station/<int:station_id>/fallback/", views.fallback_save, name="fallback"),
]
