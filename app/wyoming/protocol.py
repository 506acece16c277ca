"""Reading Wyoming events with bounds.

An event is a JSON header line `{"type", "data"?, "data_length"?, "payload_length"?}` followed
by `data_length` bytes of JSON (merged into `data`) and `payload_length` bytes of payload.
The wyoming package's own reader trusts the lengths (a header may announce gigabytes) and
lets some malformed headers raise; this one refuses, with a `ProtocolError`, anything that is
not a well-formed event within `max_event_bytes`, so the connection can be closed cleanly.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from wyoming.event import Event


class ProtocolError(Exception):
    """The client broke the framing: the connection is closed after an error event."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def _length(header: dict[str, Any], key: str) -> int:
    value = header.get(key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProtocolError(f"{key} must be a non-negative integer, got {value!r}", "bad_header")
    return value


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ProtocolError(f"the event {what} is not valid JSON", "invalid_json") from None
    if not isinstance(value, dict):
        raise ProtocolError(
            f"the event {what} must be a JSON object, got {type(value).__name__}", "bad_header"
        )
    return value


async def read_event(reader: asyncio.StreamReader, max_event_bytes: int) -> Event | None:
    """The next event, or None at a clean end of stream (between events).

    The reader's own limit must be at least `max_event_bytes` (the header line is read with
    readuntil, which stops at that limit)."""
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise ProtocolError("the stream ended inside an event header", "truncated") from None
    except asyncio.LimitOverrunError:
        raise ProtocolError(
            f"no event header line within {max_event_bytes} bytes (not Wyoming?)",
            "event_too_large",
        ) from None
    if len(line) > max_event_bytes:
        raise ProtocolError(
            f"the event header is {len(line)} bytes; the limit is {max_event_bytes}",
            "event_too_large",
        )
    header = _json_object(line, "header")
    event_type = header.get("type")
    if not isinstance(event_type, str) or not event_type:
        raise ProtocolError("the event header has no type", "bad_header")
    data = header.get("data") or {}
    if not isinstance(data, dict):
        raise ProtocolError("the event data must be a JSON object", "bad_header")
    data_length = _length(header, "data_length")
    payload_length = _length(header, "payload_length")
    total = len(line) + data_length + payload_length
    if total > max_event_bytes:
        raise ProtocolError(
            f"the {event_type!r} event is {total} bytes; the limit is {max_event_bytes}",
            "event_too_large",
        )
    try:
        if data_length:
            data = {**data, **_json_object(await reader.readexactly(data_length), "data")}
        payload = await reader.readexactly(payload_length) if payload_length else None
    except asyncio.IncompleteReadError:
        raise ProtocolError(
            f"the stream ended inside the {event_type!r} event (shorter than its data_length "
            "or payload_length)",
            "truncated",
        ) from None
    return Event(type=event_type, data=data, payload=payload)
