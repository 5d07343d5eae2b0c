from django.urls import path

from . import views

app_name = "chargers"

urlpatterns = [
    path("", views.home, name="home"),
]
