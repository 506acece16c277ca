"""The project's first realtime protocol (`voicefleet.v1`, reference: protocol.py) as a
`Wire` over the shared engine. Served at /v1/voicefleet/realtime only so that
`voicefleet bench --realtime` can compare it with the OpenAI protocol in one run; new clients
use the OpenAI Realtime API at /v1/realtime.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from pydantic import ValidationError

from app.realtime.outbox import Outgoing, messages
from app.realtime.protocol import (
    InputText,
    Ping,
    ResponseCancel,
    SessionUpdate,
    client_event,
    error_event,
)
from app.realtime.wire import Status, Wire, WireError

if TYPE_CHECKING:
    from app.realtime.respond import Reply


class VoicefleetWire(Wire):
    # --- client -> engine ---------------------------------------------------------------
    def on_binary(self, data: bytes) -> None:
        if len(data) % 2:
            self.session.protocol_error(
                "invalid_audio", "binary messages are 16-bit PCM: even length"
            )
            return
        self.session.audio_in(data)

    def on_text(self, text: str) -> None:
        s = self.session
        try:
            event = client_event.validate_python(json.loads(text))
        except (ValueError, ValidationError) as exc:
            detail = str(exc).splitlines()[0][:200]
            s.protocol_error("invalid_event", f"not a valid client event: {detail}")
            return
        if isinstance(event, Ping):
            s.send(messages({"type": "pong"}))
        elif isinstance(event, ResponseCancel):
            s.cancel_reply("client")
        elif isinstance(event, InputText):
            self._input_text(event.text)
        elif isinstance(event, SessionUpdate):
            self._update(event)

    def _update(self, event: SessionUpdate) -> None:
        s = self.session
        cap = s.state.settings.llm.max_tokens_cap
        if event.max_tokens is not None and event.max_tokens > cap:
            s.protocol_error("max_tokens_too_large", f"max_tokens is capped at {cap}")
            return
        if event.sample_rate is not None:
            s.set_sample_rate(event.sample_rate)
        s.max_tokens = event.max_tokens or s.max_tokens
        if event.temperature is not None:
            s.temperature = event.temperature
        s.send(messages({"type": "session.updated", "input_sample_rate": s.decoder.sample_rate,
                     "max_tokens": s.max_tokens, "temperature": s.temperature}))  # fmt: skip

    def _input_text(self, text: str) -> None:
        s = self.session
        limit = s.state.settings.limits.max_input_chars
        if len(text) > limit or not s.history.fits_alone(text, s.max_tokens):
            s.protocol_error(
                "input_too_long", f"the text does not fit one turn ({len(text)} characters)"
            )
            return
        s.respond(text=text)

    # --- engine -> client ---------------------------------------------------------------
    def session_created(self) -> list[Outgoing]:
        s = self.session
        cfg = s.cfg
        return messages({
            "type": "session.created",
            "session_id": s.id,
            "slot": s.slot,
            "input_sample_rate": s.decoder.sample_rate,
            "output_sample_rate": s.state.require_tts().sample_rate,
            "max_tokens": s.max_tokens,
            "limits": {
                "max_frame_bytes": cfg.max_frame_bytes,
                "max_session_s": cfg.max_session_s,
                "idle_timeout_s": cfg.idle_timeout_s,
                "end_silence_ms": cfg.end_silence_ms,
                "commit_silence_ms": cfg.commit_silence_ms,
            },
        })  # fmt: skip

    def speech_started(self, audio_ms: int, item_id: str, resumed: bool) -> list[Outgoing]:
        event: dict[str, object] = {"type": "speech_started", "audio_ms": audio_ms}
        if resumed:
            event["resumed"] = True
        return messages(event)

    def speech_stopped(self, audio_ms: int, item_id: str) -> list[Outgoing]:
        return messages({"type": "speech_stopped", "audio_ms": audio_ms})

    def input_committed(self, item_id: str, previous_id: str | None) -> list[Outgoing]:
        return []

    def transcript(self, reply: Reply) -> list[Outgoing]:
        return messages({"type": "transcript", "turn": reply.turn, "text": reply.user_text})

    def reply_started(self, reply: Reply) -> list[Outgoing]:
        return []

    def text_delta(self, reply: Reply, delta: str) -> list[Outgoing]:
        return messages({"type": "response.text.delta", "turn": reply.turn, "delta": delta})

    def audio(self, reply: Reply, pcm: bytes, sample_rate: int, piece: str) -> list[Outgoing]:
        step = 32 * 1024  # per binary message
        out = []
        for start in range(0, len(pcm), step):
            part = pcm[start : start + step]
            event = {"type": "response.audio", "turn": reply.turn, "bytes": len(part),
                     "sample_rate": sample_rate, "text": piece}  # fmt: skip
            out.append(Outgoing(event, part, droppable=True))
        return out

    def reply_ended(self, reply: Reply, status: Status, reason: str) -> list[Outgoing]:
        if status in ("cancelled", "failed"):
            return messages({"type": "response.cancelled", "turn": reply.turn,
                         "reason": "error" if status == "failed" else reason})  # fmt: skip
        finish = reason if reply.user_text or not reply.has_input else "no_speech"
        return messages({"type": "response.done", "turn": reply.turn, "text": reply.text,
                     "finish_reason": finish})  # fmt: skip

    def timings(self, reply: Reply) -> list[Outgoing]:
        return messages(reply.timings.event())

    def error(self, err: WireError) -> list[Outgoing]:
        return messages(error_event(err.code, err.message, err.fatal))
