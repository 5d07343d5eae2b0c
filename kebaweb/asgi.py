"""The ASGI entry point: Django for HTTP, Channels consumers for WebSockets."""

import os
import sys

from django.core.asgi import get_asgi_application
from django.core.exceptions import ImproperlyConfigured

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kebaweb.settings")
# Set Django up before importing anything that may import models.
try:
    django_asgi_app = get_asgi_application()
except ImproperlyConfigured as exc:
    # Started by daphne directly (the scaled set-up): one line and status 2, as manage.py does.
    print(f"kebaweb: {exc}", file=sys.stderr)
    raise SystemExit(2) from None

from channels.auth import AuthMiddlewareStack
from channels.routing import ProtocolTypeRouter, URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from django.urls import re_path

from chargers.routing import RefuseUnknownPath, websocket_urlpatterns

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(
                URLRouter([*websocket_urlpatterns, re_path(r"", RefuseUnknownPath.as_asgi())])
            )
        ),
    }
)
