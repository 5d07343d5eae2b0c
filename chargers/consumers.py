"""The dashboard's live socket: forwards what chargers.live publishes, one JSON frame each."""

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from chargers import live, roles

# Kiosk screens are seen by anyone passing by: nothing that names a person or a card,
# and nothing of an override (it names who made it; kiosks have no controls).
REDACTED_FIELDS = frozenset(
    {"session_id", "address", "tag", "owner", "override_id", "override_text"}
)


class LiveConsumer(AsyncJsonWebsocketConsumer):
    """`/ws/live/`: viewers, members and staff get every station; kiosk sockets redacted."""

    redacted = False

    async def connect(self) -> None:
        user = self.scope.get("user")
        if await database_sync_to_async(roles.can_view)(user):
            self.redacted = False
        elif roles.public_dashboard():
            self.redacted = True
        else:
            await self.close()  # before accept(): the handshake is refused with 403
            return
        await self.channel_layer.group_add(live.ALL_STATIONS_GROUP, self.channel_name)
        await self.accept()
        await live.ask_for_status()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(live.ALL_STATIONS_GROUP, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """The socket only listens: controls go through the pages, with their checks."""

    async def station_status(self, message: dict[str, Any]) -> None:
        fields = dict(message["status"])
        if self.redacted:
            fields = {k: v for k, v in fields.items() if k not in REDACTED_FIELDS}
        await self.send_json(fields | {"type": "status", "station": message["station"]})

    async def station_command(self, message: dict[str, Any]) -> None:
        if self.redacted:
            return  # kiosk screens have no controls
        await self.send_json(
            {
                "type": "command",
                "id": message["id"],
                "station": message["station"],
                "status": message["status"],
                "reason": message["reason"],
            }
        )
