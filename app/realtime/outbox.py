"""A session's outgoing messages: bounded by bytes, so a slow reader is cut off, not waited on.

The respond side never awaits the network: it appends here and moves on. One sender task per
session drains it, so a client that stops reading stalls only its own sender; once it is
`max_bytes` behind, the session closes it (4002) instead of buffering without end.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from dataclasses import dataclass
from typing import Any


@dataclass
class Outgoing:
    event: dict[str, Any]
    audio: bytes | None = None  # a binary message sent right after the event
    turn: int | None = None
    droppable: bool = False  # reply audio: dropped when its turn is cancelled
    inline_bytes: int = 0  # audio carried inside the JSON event (base64)

    @property
    def size(self) -> int:
        return len(self.audio or b"") + self.inline_bytes + 64


def messages(*events: dict[str, Any]) -> list[Outgoing]:
    """Events with no audio, as the hooks of a `Wire` return them."""
    return [Outgoing(e) for e in events]


class Overflow(Exception):
    """The client fell too far behind."""


class Outbox:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: deque[Outgoing] = deque()
        self._bytes = 0
        self._ready = asyncio.Event()
        self._empty = asyncio.Event()
        self._empty.set()
        self.closed = False

    def put(self, event: dict[str, Any], audio: bytes | None = None) -> None:
        self.put_item(Outgoing(event, audio))

    def put_item(self, item: Outgoing) -> None:
        if self.closed:
            return
        if self._bytes + item.size > self.max_bytes:
            raise Overflow(f"the client is {self._bytes} bytes behind")
        self._items.append(item)
        self._bytes += item.size
        self._ready.set()
        self._empty.clear()

    def drop_turn(self, turn: int) -> int:
        """Forget the reply audio queued for a cancelled turn (its other events, small, still
        go out: the client learns how the turn ended); returns how many dropped."""
        kept = deque(i for i in self._items if i.turn != turn or not i.droppable)
        dropped = len(self._items) - len(kept)
        self._items = kept
        self._bytes = sum(i.size for i in kept)
        if not kept:
            self._empty.set()
        return dropped

    async def get(self) -> Outgoing:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        item = self._items.popleft()
        self._bytes -= item.size
        if not self._items:
            self._empty.set()
        return item

    async def drained(self) -> None:
        """Wait until everything queued has been taken by the sender."""
        await self._empty.wait()

    @staticmethod
    def encode(event: dict[str, Any]) -> str:
        return json.dumps(event, separators=(",", ":"))
