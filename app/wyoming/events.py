"""What the Wyoming programs share: parsing an event into its class with a clear error, and
whether a reply is streamed."""

from __future__ import annotations

from typing import Any, Literal, Protocol, TypeVar

from wyoming.event import Event, Eventable

from app.errors import APIError

E = TypeVar("E", bound=Eventable)

# the key of a request's context by which a client asks for a streamed reply
STREAMING_KEY = "streaming"


class Sender(Protocol):
    """The connection, as the programs see it: one event out, bounded (a client that stops
    reading is cut off like an idle one)."""

    async def send(self, event: Event) -> None: ...


def bad_event(message: str, code: str = "bad_event") -> APIError:
    return APIError(400, message, code=code)


def parse(cls: type[E], event: Event) -> E:
    try:
        parsed = cls.from_event(event)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise bad_event(f"invalid {event.type!r} event: {type(exc).__name__} {exc}") from None
    assert isinstance(parsed, cls)
    return parsed


def wants_streaming(mode: Literal["request", "always", "off"], context: Any) -> bool:
    """wyoming.streaming: "always", or "request" and the request's context holds
    {"streaming": true}. The wyoming protocol has no request flag of its own, and a client
    that takes the first event after its request for the answer must keep getting only that
    event, so the server streams to such clients only where told to."""
    if mode == "off":
        return False
    if mode == "always":
        return True
    if not isinstance(context, dict):
        return False
    flag = context.get(STREAMING_KEY)
    if flag is not None and not isinstance(flag, bool):
        raise bad_event(f"context.{STREAMING_KEY} must be true or false, got {flag!r}")
    return flag is True
