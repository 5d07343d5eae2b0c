from django.contrib import admin
from django.urls import include, path

from chargers.accounts import LoginView, LogoutView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("login/", LoginView.as_view(), name="login"),
    path("logout/", LogoutView.as_view(), name="logout"),
    path("rules/", include("chargers.rules.urls")),
    path("", include("chargers.urls")),
]

handler500 = "chargers.storage_full.server_error"
