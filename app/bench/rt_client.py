"""A client of the first realtime protocol (/v1/voicefleet/realtime, app/realtime/protocol.py):
binary PCM frames in, the reply audio per turn out. Kept for `voicefleet bench --realtime`'s
comparison of the two protocols and the first protocol's tests; the bench's other realtime
figures go through the OpenAI protocol (openai_client.py). Shared parts: ws_client.py."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from app.bench.ws_client import EventClient, open_ws


@dataclass
class RealtimeClient(EventClient):
    audio: dict[int, bytearray] = field(default_factory=lambda: defaultdict(bytearray))
    audio_after_cancel: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    _pending_turn: int | None = None
    _cancelled: set[int] = field(default_factory=set)

    @classmethod
    async def open(
        cls, url: str, api_key: str | None, sample_rate: int | None = None, **kw: Any
    ) -> RealtimeClient:
        client = cls(await open_ws(url, "/v1/voicefleet/realtime", api_key, 4 * 1024 * 1024))
        client.start()
        await client.wait_for("session.created")
        if sample_rate is not None or kw:
            update = {"type": "session.update", **kw}
            if sample_rate is not None:
                update["sample_rate"] = sample_rate
            await client.send_event(update)
            await client.wait_for("session.updated")
        return client

    def on_event(self, data: dict[str, Any]) -> None:
        if data["type"] == "response.audio":
            self._pending_turn = data["turn"]
        elif data["type"] == "response.cancelled":
            self._cancelled.add(data["turn"])

    def on_binary(self, data: bytes) -> None:
        turn = self._pending_turn
        if turn is not None:
            self.audio[turn] += data
            if turn in self._cancelled:
                self.audio_after_cancel[turn] += len(data)

    async def send_frame(self, pcm: bytes, rate: int) -> None:
        await self.ws.send(pcm)
