"""An OpenAI Realtime API client (/v1/realtime, GA event names) for the bench: feeds PCM as
base64 `input_audio_buffer.append` events at a chosen pace and records every event with its
arrival time. Plain websockets, so the bench needs no `openai` package on a unit (the tests
use the official SDK)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from app.bench.rt_client import PCM, Event, last_voiced_s
from app.realtime.audio_out import PcmResampler

RATE = 24000


@dataclass
class OpenAIRealtimeClient:
    ws: ClientConnection
    events: list[Event] = field(default_factory=list)
    closed_code: int | None = None
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _reader: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls, url: str, api_key: str | None, session: dict[str, Any] | None = None
    ) -> OpenAIRealtimeClient:
        ws_url = url.replace("http://", "ws://").replace("https://", "wss://").rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        ws = await connect(f"{ws_url}/v1/realtime?model=voicefleet", additional_headers=headers,
                           compression=None, max_size=None, open_timeout=30)  # fmt: skip
        client = cls(ws)
        client._reader = asyncio.create_task(client._read())
        await client.wait_for("session.created")
        if session:
            await client.send_event({"type": "session.update",
                                     "session": {"type": "realtime", **session}})  # fmt: skip
            await client.wait_for("session.updated")
        return client

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                self.events.append(Event(time.perf_counter(), json.loads(message)))
                self._arrived.set()
        except Exception:  # the connection ended; the close code tells how
            pass
        finally:
            self.closed_code = self.ws.close_code
            self._arrived.set()

    def of(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.data["type"] == kind]

    async def wait_for(self, kind: str, timeout_s: float = 60.0, count: int = 1) -> Event:
        deadline = time.perf_counter() + timeout_s
        while True:
            found = self.of(kind)
            if len(found) >= count:
                return found[count - 1]
            if self.closed_code is not None:
                raise ConnectionError(f"closed ({self.closed_code}) waiting for {kind}")
            left = deadline - time.perf_counter()
            if left <= 0:
                raise TimeoutError(f"no {kind} within {timeout_s} s")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)

    async def send_audio(
        self, pcm: PCM, rate: int, *, pace: float = 1.0, frame_ms: int = 20
    ) -> float:
        """Send PCM (resampled to 24 kHz) in frames, `pace` x real time; returns the
        perf_counter time at which the last voiced frame was sent."""
        n = rate * frame_ms // 1000
        resampler = PcmResampler(rate, RATE)
        voiced_end = last_voiced_s(pcm, rate)
        t_voiced = start = time.perf_counter()
        for i in range(0, len(pcm), n):
            data = resampler.convert(pcm[i : i + n].astype("<i2").tobytes())
            await self.send_event({"type": "input_audio_buffer.append",
                                   "audio": base64.b64encode(data).decode()})  # fmt: skip
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
