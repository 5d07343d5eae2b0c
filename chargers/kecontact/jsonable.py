"""Decoded messages as plain JSON-able dicts, for the command line and the web.

Values keep the codec's units (A, kWh, W, %); enums appear by name, times in
ISO 8601, and a report 1 carries what its product string tells.
"""

import dataclasses
from datetime import datetime
from enum import Enum
from typing import Any

from .codec import (
    Ack,
    Firmware,
    Message,
    Report1,
    Report2,
    Report3,
    SessionReport,
    Started,
    StatusUpdate,
)
from .products import ProductInfo

KINDS: dict[type, str] = {
    Report1: "report1",
    Report2: "report2",
    Report3: "report3",
    SessionReport: "session",
    Ack: "ack",
    Firmware: "firmware",
    StatusUpdate: "status",
    Started: "started",
}


def kind_of(message: Message) -> str:
    return KINDS[type(message)]


def to_jsonable(message: Message) -> dict[str, Any]:
    """{"kind": "report2", "state": "CHARGING", ...} for any decoded message."""
    return {"kind": kind_of(message), **_dataclass_dict(message)}


def _dataclass_dict(value: Any) -> dict[str, Any]:
    result = {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, ProductInfo):
        result["label"] = value.label
    if isinstance(value, Report1):
        result["udp_enabled"] = value.udp_enabled
    if isinstance(value, SessionReport):
        # Without the time of receipt these are only set when the station
        # gave real (epoch or clock-synced) times, never guessed from uptime.
        result["started_at"] = _plain(value.started_at())
        result["ended_at"] = _plain(value.ended_at())
    return result


def _plain(value: Any) -> Any:
    if isinstance(value, str):  # before Enum: a StrEnum's value is its text
        return str(value)
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, datetime):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _dataclass_dict(value)
    if isinstance(value, set | frozenset):
        return sorted(_plain(item) for item in value)
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    return value
