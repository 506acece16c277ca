"""A client of the first realtime protocol (/v1/voicefleet/realtime, app/realtime/protocol.py)
for the bench and the tests: feeds PCM at a chosen pace, records every event with its
arrival time, and the reply audio per turn. The OpenAI protocol's client: openai_client.py."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import time
import wave
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from websockets.asyncio.client import ClientConnection, connect

PCM = npt.NDArray[np.int16]


def wav_pcm(data: bytes) -> tuple[PCM, int]:
    with wave.open(io.BytesIO(data)) as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2, "16-bit mono WAV expected"
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").copy(), w.getframerate()


def _frame_rms(pcm: PCM, rate: int, frame_ms: int = 20) -> npt.NDArray[np.float64]:
    n = rate * frame_ms // 1000
    frames = pcm[: len(pcm) // n * n].astype(np.float64).reshape(-1, n)
    rms: npt.NDArray[np.float64] = np.sqrt((frames**2).mean(axis=1))
    return rms


def trim_silence(pcm: PCM, rate: int, level: float = 300.0) -> PCM:
    """Cut leading and trailing near-silence (in 20 ms frames)."""
    voiced = np.nonzero(_frame_rms(pcm, rate) > level)[0]
    if not len(voiced):
        return pcm
    n = rate // 50
    return pcm[voiced[0] * n : (voiced[-1] + 1) * n]


def silence(rate: int, seconds: float) -> PCM:
    return np.zeros(int(rate * seconds), dtype=np.int16)


def last_voiced_s(pcm: PCM, rate: int, level: float = 300.0) -> float:
    """Where the last voiced 20 ms frame ends, in seconds from the start."""
    voiced = np.nonzero(_frame_rms(pcm, rate) > level)[0]
    return float((voiced[-1] + 1) * 0.02) if len(voiced) else 0.0


@dataclass
class Event:
    t: float  # perf_counter at arrival
    data: dict[str, Any]


@dataclass
class RealtimeClient:
    ws: ClientConnection
    events: list[Event] = field(default_factory=list)
    audio: dict[int, bytearray] = field(default_factory=lambda: defaultdict(bytearray))
    audio_after_cancel: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    closed_code: int | None = None
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _reader: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls, url: str, api_key: str | None, sample_rate: int | None = None, **kw: Any
    ) -> RealtimeClient:
        ws_url = url.replace("http://", "ws://").replace("https://", "wss://").rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        ws = await connect(
            f"{ws_url}/v1/voicefleet/realtime",
            additional_headers=headers,
            compression=None,
            max_size=4 * 1024 * 1024,
            open_timeout=30,
        )
        client = cls(ws)
        client._reader = asyncio.create_task(client._read())
        await client.wait_for("session.created")
        if sample_rate is not None or kw:
            update = {"type": "session.update", **kw}
            if sample_rate is not None:
                update["sample_rate"] = sample_rate
            await ws.send(json.dumps(update))
            await client.wait_for("session.updated")
        return client

    async def _read(self) -> None:
        pending_turn: int | None = None
        cancelled: set[int] = set()
        try:
            async for message in self.ws:
                now = time.perf_counter()
                if isinstance(message, bytes):
                    if pending_turn is not None:
                        self.audio[pending_turn] += message
                        if pending_turn in cancelled:
                            self.audio_after_cancel[pending_turn] += len(message)
                    continue
                data = json.loads(message)
                if data["type"] == "response.audio":
                    pending_turn = data["turn"]
                elif data["type"] == "response.cancelled":
                    cancelled.add(data["turn"])
                self.events.append(Event(now, data))
                self._arrived.set()
        except Exception:  # the connection ended; the close code tells how
            pass
        finally:
            self.closed_code = self.ws.close_code
            self._arrived.set()

    def of(self, kind: str, turn: int | None = None) -> list[Event]:
        return [
            e
            for e in self.events
            if e.data["type"] == kind and (turn is None or e.data.get("turn") == turn)
        ]

    async def wait_for(
        self, kind: str, turn: int | None = None, timeout_s: float = 60.0, count: int = 1
    ) -> Event:
        deadline = time.perf_counter() + timeout_s
        while True:
            found = self.of(kind, turn)
            if len(found) >= count:
                return found[count - 1]
            if self.closed_code is not None:
                raise ConnectionError(f"closed ({self.closed_code}) waiting for {kind}")
            left = deadline - time.perf_counter()
            if left <= 0:
                raise TimeoutError(f"no {kind} (turn {turn}) within {timeout_s} s")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)

    async def send_audio(
        self, pcm: PCM, rate: int, *, pace: float = 1.0, frame_ms: int = 20
    ) -> float:
        """Send PCM in frames, `pace` x real time (0: as fast as possible). Returns the
        perf_counter time at which the last voiced frame was sent."""
        n = rate * frame_ms // 1000
        voiced_end = last_voiced_s(pcm, rate)
        t_voiced = time.perf_counter()
        start = time.perf_counter()
        for i in range(0, len(pcm), n):
            await self.ws.send(pcm[i : i + n].astype("<i2").tobytes())
            if i / rate < voiced_end:
                t_voiced = time.perf_counter()
            if pace > 0:
                due = start + (i + n) / rate / pace
                delay = due - time.perf_counter()
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
