"""The dashboard's live socket: forwards what chargers.live publishes, one JSON frame each."""

import asyncio
import logging
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from chargers import live, roles, socket_sessions

log = logging.getLogger(__name__)

# Kiosk screens are seen by anyone passing by: nothing that names a person or a card,
# and nothing of an override (it names who made it; kiosks have no controls).
REDACTED_FIELDS = frozenset(
    {"session_id", "address", "tag", "owner", "override_id", "override_text"}
)

# The login could not be checked: the page reconnects with back-off, and the
# handshake's own check lets it in again once the database answers.
CHECK_FAILED = 1011


class LiveConsumer(AsyncJsonWebsocketConsumer):
    """`/ws/live/`: viewers, members and staff get every station, for as long as their
    login stands (chargers.socket_sessions); kiosk sockets get them redacted."""

    redacted = False
    login: socket_sessions.Login | None = None
    rechecks: asyncio.Task[None] | None = None
    closing = False

    async def connect(self) -> None:
        self.login = await database_sync_to_async(socket_sessions.login_of)(self.scope)
        if self.login is None and not roles.public_dashboard():
            await self.close()  # before accept(): the handshake is refused with 403
            return
        self.redacted = self.login is None
        for group in self.groups_joined():
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        if self.login is not None:
            self.rechecks = asyncio.create_task(self.recheck_every())
        await live.ask_for_status()

    def groups_joined(self) -> list[str]:
        if self.login is None:
            return [live.ALL_STATIONS_GROUP]
        return [
            live.ALL_STATIONS_GROUP,
            live.user_group(self.login.user_id),
            live.session_group(self.login.session_key),
        ]

    async def disconnect(self, code: int) -> None:
        if self.rechecks is not None:
            self.rechecks.cancel()
        for group in self.groups_joined():
            await self.channel_layer.group_discard(group, self.channel_name)

    async def recheck_every(self) -> None:
        while not self.closing:
            await asyncio.sleep(socket_sessions.RECHECK_EVERY_S)
            await self.recheck()

    async def recheck(self) -> None:
        if self.login is None or self.closing:
            return
        try:
            code = await database_sync_to_async(socket_sessions.verdict)(self.login)
        except Exception:
            # Whatever broke (the database, the session store): a login that cannot
            # be checked does not go on streaming.
            log.exception("the live socket of user %s could not be checked", self.login.user_id)
            code = CHECK_FAILED
        if code is not None:
            await self.end(code)

    async def end(self, code: int) -> None:
        if not self.closing:
            self.closing = True
            await self.close(code)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """The socket only listens: controls go through the pages, with their checks."""

    async def login_ended(self, message: dict[str, Any]) -> None:
        await self.end(socket_sessions.SIGNED_OUT)

    async def login_changed(self, message: dict[str, Any]) -> None:
        await self.recheck()

    async def station_status(self, message: dict[str, Any]) -> None:
        if self.closing:
            return  # the login ended: not one frame more while the socket closes
        fields = dict(message["status"])
        if self.redacted:
            fields = {k: v for k, v in fields.items() if k not in REDACTED_FIELDS}
        await self.send_json(fields | {"type": "status", "station": message["station"]})

    async def station_command(self, message: dict[str, Any]) -> None:
        if self.redacted or self.closing:
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
