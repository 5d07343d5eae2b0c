"""The only module that talks on the channel layer.

Three kinds of traffic: live status for browsers (one group per station plus
one for all); word to a browser's sockets that its login ended or changed
(one group per user and one per session); and requests to the gateway, which
owns UDP port 7090 — a wake-up after a command row was written, or a question
such as "identify the station at this address" that waits for the gateway's answer.
"""

import asyncio
import hashlib
from collections.abc import AsyncIterator
from typing import Any

from channels.layers import BaseChannelLayer, get_channel_layer

ALL_STATIONS_GROUP = "stations"
GATEWAY_GROUP = "gateway"


class GatewayUnavailable(Exception):
    """No gateway answered: it is not running, or runs without a shared channel layer."""


def station_group(station_id: int) -> str:
    return f"station-{station_id}"


def user_group(user_id: int) -> str:
    return f"user-{user_id}"


def session_group(session_key: str) -> str:
    # A digest, not the key: group names are stored in Redis, and a session key is a login.
    return "session-" + hashlib.sha256(session_key.encode()).hexdigest()


def _layer() -> BaseChannelLayer | None:
    return get_channel_layer()


async def publish_status(station_id: int, status: dict[str, Any]) -> None:
    """Send a station's new status to its own group and to the group of all."""
    layer = _layer()
    if layer is None:
        return
    message = {"type": "station.status", "station": station_id, "status": status}
    await layer.group_send(station_group(station_id), message)
    await layer.group_send(ALL_STATIONS_GROUP, message)


async def publish_command(station_id: int, command_id: int, status: str, reason: str) -> None:
    """A command row's new status, for the dashboards that show its station."""
    layer = _layer()
    if layer is None:
        return
    message = {
        "type": "station.command",
        "station": station_id,
        "id": command_id,
        "status": str(status),
        "reason": reason,
    }
    await layer.group_send(ALL_STATIONS_GROUP, message)


async def end_session_sockets(session_key: str) -> None:
    """The session logged out: its sockets close at once."""
    layer = _layer()
    if layer is not None:
        await layer.group_send(session_group(session_key), {"type": "login.ended"})


async def recheck_user_sockets(user_id: int) -> None:
    """The account or its groups changed: its sockets check their login again now."""
    layer = _layer()
    if layer is not None:
        await layer.group_send(user_group(user_id), {"type": "login.changed"})


async def wake_gateway(station_id: int) -> None:
    """Tell the gateway a command row is waiting; its periodic scan is the fallback."""
    layer = _layer()
    if layer is not None:
        await layer.group_send(GATEWAY_GROUP, {"type": "gateway.wake", "station": station_id})


async def wake_gateway_rules() -> None:
    """Tell the gateway rules changed or a boundary came; its periodic scan is the fallback."""
    layer = _layer()
    if layer is not None:
        await layer.group_send(GATEWAY_GROUP, {"type": "gateway.rules"})


async def ask_for_status() -> None:
    """A browser just connected: the gateway sends every station's status again,
    since frames published before the socket joined its group were missed."""
    layer = _layer()
    if layer is not None:
        await layer.group_send(GATEWAY_GROUP, {"type": "gateway.resend"})


async def ask_gateway(request: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """Send a request to the gateway and wait for its reply."""
    layer = _layer()
    if layer is None:
        raise GatewayUnavailable("no channel layer is configured")
    reply_to = await layer.new_channel()
    await layer.group_send(GATEWAY_GROUP, request | {"reply_to": reply_to})
    try:
        return dict(await asyncio.wait_for(layer.receive(reply_to), timeout_s))
    except TimeoutError:
        raise GatewayUnavailable(
            "the gateway did not answer: is `manage.py serve` (or `manage.py gateway`) "
            "running? With several processes, set REDIS_URL so that they can talk."
        ) from None


async def answer(reply_to: str, reply: dict[str, Any]) -> None:
    layer = _layer()
    if layer is not None:
        await layer.send(reply_to, {"type": "gateway.reply"} | reply)


async def gateway_requests(ready: asyncio.Event | None = None) -> AsyncIterator[dict[str, Any]]:
    """What others ask of the gateway, for as long as the caller keeps reading.

    `ready` is set once the gateway is subscribed: a wake-up sent after that is heard."""
    layer = _layer()
    if layer is None:
        if ready is not None:
            ready.set()
        return
    channel = await layer.new_channel()
    await layer.group_add(GATEWAY_GROUP, channel)
    if ready is not None:
        ready.set()
    try:
        while True:
            yield dict(await layer.receive(channel))
    finally:
        await layer.group_discard(GATEWAY_GROUP, channel)
