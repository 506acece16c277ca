"""An OpenAI Realtime API client (/v1/realtime, GA event names) for the bench: feeds PCM as
base64 `input_audio_buffer.append` events (resampled to 24 kHz) and records every event with
its arrival time. Plain websockets, so the bench needs no `openai` package on a unit (the
tests use the official SDK). Shared parts: ws_client.py."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from app.bench.ws_client import EventClient, open_ws
from app.realtime.audio_out import PcmResampler

RATE = 24000


@dataclass
class OpenAIRealtimeClient(EventClient):
    _resampler: PcmResampler | None = None

    @classmethod
    async def open(
        cls, url: str, api_key: str | None, session: dict[str, Any] | None = None
    ) -> OpenAIRealtimeClient:
        client = cls(await open_ws(url, "/v1/realtime?model=voicefleet", api_key, None))
        client.start()
        await client.wait_for("session.created")
        if session:
            await client.send_event({"type": "session.update",
                                     "session": {"type": "realtime", **session}})  # fmt: skip
            await client.wait_for("session.updated")
        return client

    async def send_frame(self, pcm: bytes, rate: int) -> None:
        # one resampler for the session's input, so its state carries across frames
        if self._resampler is None or self._resampler.in_rate != rate:
            self._resampler = PcmResampler(rate, RATE)
        data = self._resampler.convert(pcm)
        await self.send_event({"type": "input_audio_buffer.append",
                               "audio": base64.b64encode(data).decode()})  # fmt: skip
