"""What the bench's two realtime clients share (rt_client.py: the first protocol,
openai_client.py: the OpenAI Realtime API): the WebSocket, every event recorded with its
arrival time, waiting for an event, and PCM fed in frames at a chosen pace."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from app.bench.pcm import PCM, last_voiced_s


@dataclass
class Event:
    t: float  # perf_counter at arrival
    data: dict[str, Any]


async def open_ws(
    url: str, path: str, api_key: str | None, max_size: int | None
) -> ClientConnection:
    """`path` on the service at `url` (http[s]://) as a WebSocket, the key as a Bearer."""
    ws_url = url.replace("http://", "ws://").replace("https://", "wss://").rstrip("/")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return await connect(f"{ws_url}{path}", additional_headers=headers, compression=None,
                         max_size=max_size, open_timeout=30)  # fmt: skip


@dataclass
class EventClient:
    """A protocol's client overrides send_frame and, where it needs them, the hooks."""

    ws: ClientConnection
    events: list[Event] = field(default_factory=list)
    closed_code: int | None = None
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _reader: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                now = time.perf_counter()
                if isinstance(message, bytes):
                    self.on_binary(message)
                    continue
                data = json.loads(message)
                self.on_event(data)
                self.events.append(Event(now, data))
                self._arrived.set()
        except Exception:  # the connection ended; the close code tells how
            pass
        finally:
            self.closed_code = self.ws.close_code
            self._arrived.set()

    def on_binary(self, data: bytes) -> None:
        """A binary message (the first protocol's reply audio)."""

    def on_event(self, data: dict[str, Any]) -> None:
        """A JSON event, before it is recorded."""

    def of(self, kind: str, **fields: Any) -> list[Event]:
        """The events of type `kind` whose data hold `fields` (None: any value)."""
        return [
            e
            for e in self.events
            if e.data["type"] == kind
            and all(v is None or e.data.get(k) == v for k, v in fields.items())
        ]

    async def wait_for(
        self, kind: str, *, timeout_s: float = 60.0, count: int = 1, **fields: Any
    ) -> Event:
        """The `count`-th event of type `kind` (see `of`), once it has arrived."""
        deadline = time.perf_counter() + timeout_s
        while True:
            found = self.of(kind, **fields)
            if len(found) >= count:
                return found[count - 1]
            if self.closed_code is not None:
                raise ConnectionError(f"closed ({self.closed_code}) waiting for {kind}")
            left = deadline - time.perf_counter()
            if left <= 0:
                raise TimeoutError(f"no {kind} {fields or ''} within {timeout_s} s")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)

    async def send_frame(self, pcm: bytes, rate: int) -> None:
        """One frame of 16-bit PCM at `rate`, in the protocol's form."""
        raise NotImplementedError

    async def send_audio(
        self, pcm: PCM, rate: int, *, pace: float = 1.0, frame_ms: int = 20
    ) -> float:
        """Send PCM in frames, `pace` x real time (0: as fast as possible). Returns the
        perf_counter time at which the last voiced frame was sent."""
        n = rate * frame_ms // 1000
        voiced_end = last_voiced_s(pcm, rate)
        t_voiced = start = time.perf_counter()
        for i in range(0, len(pcm), n):
            await self.send_frame(pcm[i : i + n].astype("<i2").tobytes(), rate)
            if i / rate < voiced_end:
                t_voiced = time.perf_counter()
            if pace > 0:
                delay = start + (i + n) / rate / pace - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
        return t_voiced

    async def send_event(self, event: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(event))

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
