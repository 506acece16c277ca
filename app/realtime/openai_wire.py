"""The OpenAI Realtime API (GA and beta event names) as a `Wire` over the shared engine.

Client events: session.update, input_audio_buffer.append|commit|clear,
conversation.item.create|delete|truncate|retrieve, response.create|cancel. A bad event gets
an `error` event (OpenAI's shape, with `param` and the client's `event_id`) and the session
goes on. Audio is base64 PCM16 in JSON, 24 kHz unless the session declares another rate.
Session fields: openai_session.py; objects and the names that differ by version:
openai_items.py; the rules (one terminal response.done, truncation): docs/realtime.md.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import TYPE_CHECKING, Any

from app.realtime.audio_out import PcmResampler
from app.realtime.openai_items import (
    Names,
    error_json,
    event,
    item_json,
    reply_item,
    response_json,
    user_audio_item,
)
from app.realtime.openai_session import OPENAI_RATE, BadField, parse_session
from app.realtime.outbox import Outgoing
from app.realtime.wire import Status, Wire

if TYPE_CHECKING:
    from app.realtime.respond import Reply
    from app.realtime.session import Session

AUDIO_DELTA_BYTES = 24 * 1024  # PCM per audio delta (0.5 s at 24 kHz)
_ROLES = {"user": "input_text", "system": "input_text", "assistant": "output_text"}


def _out(*events: dict[str, Any]) -> list[Outgoing]:
    return [Outgoing(e) for e in events]


class OpenAIWire(Wire):
    # OpenAI answers bad events with an error and goes on; a client sending nothing but bad
    # events is still cut off eventually (1008)
    max_protocol_errors = 100

    def __init__(self, session: Session, beta: bool, model: str) -> None:
        super().__init__(session)
        self.names = Names(beta)
        self.model = model
        self.output_rate = OPENAI_RATE
        self.tool_choice: Any = "auto"
        self._resamplers: dict[str, PcmResampler] = {}
        session.set_sample_rate(OPENAI_RATE)

    # --- client -> engine ---------------------------------------------------------------
    def on_binary(self, data: bytes) -> None:
        self.session.protocol_error(
            "invalid_event", "binary messages are not part of this protocol: send audio as "
            "input_audio_buffer.append with base64 PCM16"
        )  # fmt: skip

    def on_text(self, text: str) -> None:
        try:
            ev = json.loads(text)
        except ValueError:
            self.session.protocol_error("invalid_json", "the message is not JSON")
            return
        if not isinstance(ev, dict) or not isinstance(ev.get("type"), str):
            self.session.protocol_error("invalid_event", "an event is an object with a 'type'")
            return
        handler = getattr(self, "_on_" + ev["type"].replace(".", "_"), None)
        event_id = ev.get("event_id") if isinstance(ev.get("event_id"), str) else None
        if handler is None:
            self.session.protocol_error(
                "invalid_event_type", f"unknown or unsupported event type {ev['type']!r}", event_id
            )
            return
        try:
            handler(ev)
        except BadField as exc:
            self._error(exc.param, str(exc), event_id)
        except (KeyError, TypeError, ValueError) as exc:
            self._error(None, f"{ev['type']}: missing or malformed field ({exc})", event_id)

    def _error(self, param: str | None, message: str, event_id: str | None) -> None:
        self.session.protocol_error("invalid_value", message, event_id, param)

    def _on_session_update(self, ev: dict[str, Any]) -> None:
        s = self.session
        cap = s.state.settings.llm.max_tokens_cap
        ch = parse_session(ev["session"], s.cfg, cap, self.names.beta)
        if ch.input_rate is not None:
            s.set_sample_rate(ch.input_rate)
        if ch.output_rate is not None:
            self.output_rate = ch.output_rate
        if ch.sets_turn_detection:
            s.set_turn_detection(ch.turn_detection)
        if ch.instructions is not None:
            s.history.system_prompt = ch.instructions or s.state.settings.llm.system_prompt
        if ch.audio_out is not None:
            s.audio_out = ch.audio_out
        if ch.max_tokens is not None:
            s.max_tokens = ch.max_tokens
        if ch.temperature is not None:
            s.temperature = ch.temperature
        if ch.tool_choice is not None:
            self.tool_choice = ch.tool_choice
        s.send(_out(event("session.updated", session=self._session_json())))

    def _on_input_audio_buffer_append(self, ev: dict[str, Any]) -> None:
        try:
            pcm = base64.b64decode(ev["audio"], validate=True)
        except (binascii.Error, TypeError) as exc:
            raise BadField("audio", "audio is not valid base64") from exc
        if len(pcm) % 2:
            raise BadField("audio", "audio must be whole 16-bit samples (an even byte count)")
        self.session.audio_in(pcm)

    def _on_input_audio_buffer_commit(self, ev: dict[str, Any]) -> None:
        if self.session.detect is not None:
            raise BadField("type", "turn_detection is on: the server commits the audio buffer")
        if not self.session.commit_input():
            raise BadField("type", "the input audio buffer is empty")

    def _on_input_audio_buffer_clear(self, ev: dict[str, Any]) -> None:
        self.session.clear_input()
        self.session.send(_out(event("input_audio_buffer.cleared")))

    def _on_conversation_item_create(self, ev: dict[str, Any]) -> None:
        s = self.session
        item = ev["item"]
        if ev.get("previous_item_id") not in (None, s.history.previous_id()):
            raise BadField("previous_item_id", "items can only be added at the end")
        if item.get("type", "message") != "message":
            raise BadField("item.type", f"item type {item.get('type')!r} is not supported")
        role = item.get("role")
        if role not in _ROLES:
            raise BadField("item.role", "item.role must be user, assistant or system")
        texts = []
        for i, part in enumerate(item.get("content") or []):
            if part.get("type") not in ("input_text", "text", "output_text"):
                raise BadField(f"item.content[{i}].type", "only text content can be created")
            texts.append(str(part.get("text", "")))
        text = "".join(texts)
        if not text:
            raise BadField("item.content", "the item has no text")
        if not s.history.fits_alone(text, s.max_tokens):
            raise BadField("item.content", "the text does not fit one turn")
        previous = s.history.previous_id()
        added = s.add_item(role, text, item.get("id"))
        self._item_added(item_json(added, self.names), previous, done=True)

    def _item_added(self, item: dict[str, Any], previous: str | None, done: bool) -> None:
        if self.names.beta:
            self.session.send(_out(event("conversation.item.created", previous_item_id=previous,
                                         item=item)))  # fmt: skip
            return
        events = [event("conversation.item.added", previous_item_id=previous, item=item)]
        if done:
            events.append(event("conversation.item.done", previous_item_id=previous, item=item))
        self.session.send(_out(*events))

    def _on_conversation_item_delete(self, ev: dict[str, Any]) -> None:
        if not self.session.history.delete(ev["item_id"]):
            raise BadField("item_id", f"no item {ev['item_id']!r}")
        self.session.send(_out(event("conversation.item.deleted", item_id=ev["item_id"])))

    def _on_conversation_item_retrieve(self, ev: dict[str, Any]) -> None:
        item = self.session.history.get(ev["item_id"])
        if item is None:
            raise BadField("item_id", f"no item {ev['item_id']!r}")
        self.session.send(_out(event("conversation.item.retrieved",
                                     item=item_json(item, self.names))))  # fmt: skip

    def _on_conversation_item_truncate(self, ev: dict[str, Any]) -> None:
        s = self.session
        item_id, end_ms = ev["item_id"], ev["audio_end_ms"]
        if not isinstance(end_ms, int) or end_ms < 0:
            raise BadField("audio_end_ms", "audio_end_ms must be a non-negative integer")
        if ev.get("content_index", 0) != 0:
            raise BadField("content_index", "an assistant item has one content part (0)")
        if s.reply is not None and s.reply.item_id == item_id and s.responding:
            s.cancel_reply("client")  # still talking: stop it first
        item = s.history.get(item_id)
        if item is None or item.role != "assistant" or item.spoken is None:
            raise BadField("item_id", f"no assistant audio item {item_id!r}")
        total_ms = int(item.spoken.audio_s * 1000)
        if end_ms > total_ms:
            raise BadField("audio_end_ms", f"audio_end_ms is past the item's audio ({total_ms} ms)")
        item.text = item.spoken.heard(end_ms / 1000, within_piece=True)
        s.send(_out(event("conversation.item.truncated", item_id=item_id, content_index=0,
                          audio_end_ms=end_ms)))  # fmt: skip

    def _on_response_create(self, ev: dict[str, Any]) -> None:
        s = self.session
        overrides: dict[str, Any] = {}
        body = ev.get("response") or {}
        allowed = {"output_modalities", "modalities", "max_output_tokens", "conversation",
                   "max_response_output_tokens", "metadata", "instructions"}  # fmt: skip
        for key in body:
            if key not in allowed:
                raise BadField(f"response.{key}", f"response.{key} is not supported")
        if body.get("conversation", "auto") != "auto":
            raise BadField("response.conversation", "only the default conversation ('auto')")
        if body.get("instructions") is not None:
            raise BadField("response.instructions", "set instructions with session.update")
        modalities = body.get("output_modalities", body.get("modalities"))
        if modalities is not None:
            overrides["audio_out"] = "audio" in modalities
        limit = body.get("max_output_tokens", body.get("max_response_output_tokens"))
        if limit is not None:
            cap = s.state.settings.llm.max_tokens_cap
            overrides["max_tokens"] = cap if limit == "inf" else min(int(limit), cap)
        if s.responding:
            raise BadField("type", "a response is in progress: cancel it first")
        s.respond(**overrides)

    def _on_response_cancel(self, ev: dict[str, Any]) -> None:
        s = self.session
        wanted = ev.get("response_id")
        if not s.responding or (wanted and s.reply is not None and s.reply.response_id != wanted):
            raise BadField("response_id", "no response in progress to cancel")
        s.cancel_reply("client")

    # --- engine -> client ---------------------------------------------------------------
    def _session_json(self) -> dict[str, Any]:
        s = self.session
        td: dict[str, Any] | None = None
        if s.detect is not None:
            cfg = s.detect.settings
            td = {"type": s.detect.kind, "create_response": s.detect.create_response,
                  "interrupt_response": s.detect.interrupt_response}  # fmt: skip
            if s.detect.kind == "server_vad":
                td |= {"threshold": cfg.vad_threshold, "prefix_padding_ms": cfg.speech_pad_ms,
                       "silence_duration_ms": cfg.commit_silence_ms}  # fmt: skip
        modalities = ["audio"] if s.audio_out else ["text"]
        voice = s.state.settings.tts.voice_name
        if self.names.beta:
            # no `model` here: the beta types allow only OpenAI's model names
            return {"id": s.id, "object": "realtime.session", "modalities": modalities,
                    "instructions": s.history.system_prompt, "voice": str(voice),
                    "input_audio_format": "pcm16", "output_audio_format": "pcm16",
                    "turn_detection": td,
                    "input_audio_transcription": {}, "tools": [],
                    "tool_choice": self.tool_choice, "temperature": s.temperature,
                    "max_response_output_tokens": s.max_tokens}  # fmt: skip
        return {"type": "realtime", "object": "realtime.session", "id": s.id,
                "model": self.model, "output_modalities": modalities,
                "instructions": s.history.system_prompt, "max_output_tokens": s.max_tokens,
                "tools": [], "tool_choice": self.tool_choice,
                "audio": {"input": {"format": {"type": "audio/pcm",
                                               "rate": s.decoder.sample_rate},
                                    "transcription": {"model": "whisper"},
                                    "turn_detection": td},
                          "output": {"format": {"type": "audio/pcm", "rate": self.output_rate},
                                     "voice": str(voice)}}}  # fmt: skip

    def session_created(self) -> list[Outgoing]:
        return _out(event("session.created", session=self._session_json()))

    def speech_started(self, audio_ms: int, item_id: str, resumed: bool) -> list[Outgoing]:
        return _out(event("input_audio_buffer.speech_started", audio_start_ms=audio_ms,
                          item_id=item_id))  # fmt: skip

    def speech_stopped(self, audio_ms: int, item_id: str) -> list[Outgoing]:
        return _out(event("input_audio_buffer.speech_stopped", audio_end_ms=audio_ms,
                          item_id=item_id))  # fmt: skip

    def input_committed(self, item_id: str, previous_id: str | None) -> list[Outgoing]:
        item = user_audio_item(item_id, None)
        added = "conversation.item.created" if self.names.beta else "conversation.item.added"
        return _out(
            event("input_audio_buffer.committed", item_id=item_id, previous_item_id=previous_id),
            event(added, previous_item_id=previous_id, item=item),
        )

    def transcript(self, reply: Reply) -> list[Outgoing]:
        if not reply.from_speech:
            return []
        stt_s = round(reply.timings.stt_ms / 1000, 3)
        out = [event("conversation.item.input_audio_transcription.completed",
                     item_id=reply.user_item_id, content_index=0, transcript=reply.user_text,
                     usage={"type": "duration", "seconds": stt_s})]  # fmt: skip
        if not self.names.beta:
            item = user_audio_item(reply.user_item_id, reply.user_text)
            out.append(event("conversation.item.done", item=item))
        return _out(*out)

    def _ids(self, reply: Reply) -> dict[str, Any]:
        return {"response_id": reply.response_id, "item_id": reply.item_id, "output_index": 0,
                "content_index": 0}  # fmt: skip

    def reply_started(self, reply: Reply) -> list[Outgoing]:
        audio = reply.ctx.audio_out
        item = reply_item(reply, self.names, "in_progress", audio)
        previous = self.session.history.previous_id()
        part = {"type": "audio" if audio else "text", ("transcript" if audio else "text"): ""}
        added = "conversation.item.created" if self.names.beta else "conversation.item.added"
        ids = self._ids(reply)
        return _out(
            event("response.created", response=response_json(reply, self.names, "in_progress")),
            event(
                "response.output_item.added",
                response_id=reply.response_id,
                output_index=0,
                item=item,
            ),
            event(added, previous_item_id=previous, item=item),
            event("response.content_part.added", part=part, **ids),
        )

    def text_delta(self, reply: Reply, delta: str) -> list[Outgoing]:
        kind = self.names.transcript_delta if reply.ctx.audio_out else self.names.text_delta
        return _out(event(kind, delta=delta, **self._ids(reply)))

    def audio(self, reply: Reply, pcm: bytes, sample_rate: int, piece: str) -> list[Outgoing]:
        resampler = self._resamplers.get(reply.response_id)
        if resampler is None:
            resampler = PcmResampler(sample_rate, self.output_rate)
            self._resamplers = {reply.response_id: resampler}  # one reply at a time
        data = resampler.convert(pcm)
        out = []
        for start in range(0, len(data), AUDIO_DELTA_BYTES):
            b64 = base64.b64encode(data[start : start + AUDIO_DELTA_BYTES]).decode()
            message = event(self.names.audio_delta, delta=b64, **self._ids(reply))
            out.append(Outgoing(message, droppable=True, inline_bytes=len(b64)))
        return out

    def reply_ended(self, reply: Reply, status: Status, reason: str) -> list[Outgoing]:
        if not reply.started:
            return []  # no response was announced (no words, or transcription only)
        self._resamplers.pop(reply.response_id, None)
        audio = reply.ctx.audio_out
        item_status = "completed" if status == "completed" else "incomplete"
        item = reply_item(reply, self.names, item_status, audio)
        ids = self._ids(reply)
        events = []
        if audio:
            events += [event(self.names.audio_done, **ids),
                       event(self.names.transcript_done, transcript=reply.text, **ids)]  # fmt: skip
        else:
            events.append(event(self.names.text_done, text=reply.text, **ids))
        events += [
            event("response.content_part.done", part=item["content"][0] | {
                "type": "audio" if audio else "text"}, **ids),
            event("response.output_item.done", response_id=reply.response_id, output_index=0,
                  item=item),
        ]  # fmt: skip
        if not self.names.beta:
            events.append(event("conversation.item.done", item=item))
        events.append(event("response.done", response=response_json(
            reply, self.names, status, reason, output=[item])))  # fmt: skip
        return _out(*events)

    def timings(self, reply: Reply) -> list[Outgoing]:
        return []  # per-turn timings are on /metrics; usage is in response.done

    def error(
        self,
        code: str,
        message: str,
        fatal: bool = False,
        event_id: str | None = None,
        param: str | None = None,
    ) -> list[Outgoing]:
        return _out(error_json(code, message, param, event_id))
