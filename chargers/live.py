"""The only module that sends to the channel layer: live status for browsers."""

from typing import Any

from channels.layers import get_channel_layer

ALL_STATIONS_GROUP = "stations"


def station_group(station_id: int) -> str:
    return f"station-{station_id}"


async def publish_status(station_id: int, status: dict[str, Any]) -> None:
    """Send a station's new status to its own group and to the group of all."""
    layer = get_channel_layer()
    if layer is None:
        return
    message = {"type": "station.status", "station": station_id, "status": status}
    await layer.group_send(station_group(station_id), message)
    await layer.group_send(ALL_STATIONS_GROUP, message)
