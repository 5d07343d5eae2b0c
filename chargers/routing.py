"""WebSocket routes, served by kebaweb.asgi."""

from channels.generic.websocket import AsyncWebsocketConsumer
from django.urls import URLPattern, URLResolver, path

from chargers.consumers import LiveConsumer

websocket_urlpatterns: list[URLPattern | URLResolver] = [
    path("ws/live/", LiveConsumer.as_asgi()),
]


class RefuseUnknownPath(AsyncWebsocketConsumer):
    """Routed after every real path. Without it Channels' router raises for an
    unknown path, which daphne answers with HTTP 500 and a logged traceback."""

    async def connect(self) -> None:
        await self.close()  # before accept(): daphne answers HTTP 403
