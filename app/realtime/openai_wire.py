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
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from app.engines.base import ForcedTool
from app.realtime.history import Item, Role, new_item_id
from app.realtime.openai_items import (
    Names,
    error_json,
    event,
    item_json,
    user_audio_item,
)
from app.realtime.openai_response import ResponseEvents
from app.realtime.openai_session import OPENAI_RATE, BadField, parse_session
from app.realtime.outbox import Outgoing, messages
from app.realtime.wire import Status, Wire, WireError

if TYPE_CHECKING:
    from app.realtime.respond import FunctionCall, Reply
    from app.realtime.session import Session

_ROLES: dict[str, Role] = {"user": "user", "system": "system", "assistant": "assistant"}


class OpenAIWire(Wire):
    # OpenAI answers bad events with an error and goes on; a client sending nothing but bad
    # events is still cut off eventually (1008)
    max_protocol_errors = 100

    def __init__(self, session: Session, beta: bool, model: str) -> None:
        super().__init__(session)
        self.names = Names(beta)
        self.model = model
        self.output_rate = OPENAI_RATE
        self._responses: dict[str, ResponseEvents] = {}
        self._handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            "session.update": self._on_session_update,
            "input_audio_buffer.append": self._on_input_audio_buffer_append,
            "input_audio_buffer.commit": self._on_input_audio_buffer_commit,
            "input_audio_buffer.clear": self._on_input_audio_buffer_clear,
            "conversation.item.create": self._on_conversation_item_create,
            "conversation.item.delete": self._on_conversation_item_delete,
            "conversation.item.retrieve": self._on_conversation_item_retrieve,
            "conversation.item.truncate": self._on_conversation_item_truncate,
            "response.create": self._on_response_create,
            "response.cancel": self._on_response_cancel,
        }
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
        handler = self._handlers.get(ev["type"])
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
        except KeyError as exc:
            field = str(exc.args[0])
            self._error(field, f"{ev['type']}: the field {field!r} is missing", event_id)
        except (TypeError, ValueError) as exc:
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
        if ch.tools is not None:
            s.tools = ch.tools
        if ch.tool_choice is not None:
            s.tool_choice = ch.tool_choice
        s.send(messages(event("session.updated", session=self._session_json())))

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
        self.session.send(messages(event("input_audio_buffer.cleared")))

    def _on_conversation_item_create(self, ev: dict[str, Any]) -> None:
        s = self.session
        item = ev["item"]
        if ev.get("previous_item_id") not in (None, s.history.previous_id()):
            raise BadField("previous_item_id", "items can only be added at the end")
        previous = s.history.previous_id()
        kind = item.get("type", "message")
        if kind == "function_call_output":
            added = self._call_output(item)
        elif kind == "message":
            added = s.add_item(self._message_role(item), self._message_text(item), item.get("id"))
        else:
            raise BadField("item.type", f"item type {kind!r} is not supported")
        self._item_added(item_json(added, self.names), previous, done=True)

    def _call_output(self, item: dict[str, Any]) -> Item:
        """The client's result of a function call: the next response.create sees it."""
        call_id, output = item.get("call_id"), item.get("output")
        if not isinstance(call_id, str) or not any(
            i.role == "function_call" and i.call_id == call_id for i in self.session.history.items
        ):
            raise BadField("item.call_id", f"no function call {call_id!r} in the conversation")
        if not isinstance(output, str):
            raise BadField("item.output", "item.output must be a string")
        return self.session.history.append(
            Item(item.get("id") or new_item_id(), "tool", output, call_id=call_id)
        )

    def _message_role(self, item: dict[str, Any]) -> Role:
        role = _ROLES.get(str(item.get("role")))
        if role is None:
            raise BadField("item.role", "item.role must be user, assistant or system")
        return role

    def _message_text(self, item: dict[str, Any]) -> str:
        texts = []
        for i, part in enumerate(item.get("content") or []):
            if part.get("type") not in ("input_text", "text", "output_text"):
                raise BadField(f"item.content[{i}].type", "only text content can be created")
            texts.append(str(part.get("text", "")))
        text = "".join(texts)
        if not text:
            raise BadField("item.content", "the item has no text")
        s = self.session
        if not s.history.fits_alone(text, s.max_tokens):
            raise BadField("item.content", "the text does not fit one turn")
        return text

    def _item_added(self, item: dict[str, Any], previous: str | None, done: bool) -> None:
        if self.names.beta:
            self.session.send(messages(event("conversation.item.created", previous_item_id=previous,
                                         item=item)))  # fmt: skip
            return
        events = [event("conversation.item.added", previous_item_id=previous, item=item)]
        if done:
            events.append(event("conversation.item.done", previous_item_id=previous, item=item))
        self.session.send(messages(*events))

    def _on_conversation_item_delete(self, ev: dict[str, Any]) -> None:
        if not self.session.history.delete(ev["item_id"]):
            raise BadField("item_id", f"no item {ev['item_id']!r}")
        self.session.send(messages(event("conversation.item.deleted", item_id=ev["item_id"])))

    def _on_conversation_item_retrieve(self, ev: dict[str, Any]) -> None:
        item = self.session.history.get(ev["item_id"])
        if item is None:
            raise BadField("item_id", f"no item {ev['item_id']!r}")
        self.session.send(messages(event("conversation.item.retrieved",
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
        s.send(messages(event("conversation.item.truncated", item_id=item_id, content_index=0,
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
        tools = [{"type": "function", "name": t.name, "description": t.description or "",
                  "parameters": t.parameters or {"type": "object"}} for t in s.tools]  # fmt: skip
        choice: Any = s.tool_choice
        if isinstance(choice, ForcedTool):
            choice = {"type": "function", "name": choice.name}
        if self.names.beta:
            # no `model` here: the beta types allow only OpenAI's model names
            return {"id": s.id, "object": "realtime.session", "modalities": modalities,
                    "instructions": s.history.system_prompt, "voice": str(voice),
                    "input_audio_format": "pcm16", "output_audio_format": "pcm16",
                    "turn_detection": td,
                    "input_audio_transcription": {}, "tools": tools,
                    "tool_choice": choice if isinstance(choice, str) else choice["name"],
                    "temperature": s.temperature,
                    "max_response_output_tokens": s.max_tokens}  # fmt: skip
        return {"type": "realtime", "object": "realtime.session", "id": s.id,
                "model": self.model, "output_modalities": modalities,
                "instructions": s.history.system_prompt, "max_output_tokens": s.max_tokens,
                "tools": tools, "tool_choice": choice,
                "audio": {"input": {"format": {"type": "audio/pcm",
                                               "rate": s.decoder.sample_rate},
                                    "transcription": {"model": "whisper"},
                                    "turn_detection": td},
                          "output": {"format": {"type": "audio/pcm", "rate": self.output_rate},
                                     "voice": str(voice)}}}  # fmt: skip

    def session_created(self) -> list[Outgoing]:
        return messages(event("session.created", session=self._session_json()))

    def speech_started(self, audio_ms: int, item_id: str, resumed: bool) -> list[Outgoing]:
        return messages(event("input_audio_buffer.speech_started", audio_start_ms=audio_ms,
                          item_id=item_id))  # fmt: skip

    def speech_stopped(self, audio_ms: int, item_id: str) -> list[Outgoing]:
        return messages(event("input_audio_buffer.speech_stopped", audio_end_ms=audio_ms,
                          item_id=item_id))  # fmt: skip

    def input_committed(self, item_id: str, previous_id: str | None) -> list[Outgoing]:
        item = user_audio_item(item_id, None)
        added = "conversation.item.created" if self.names.beta else "conversation.item.added"
        return messages(
            event("input_audio_buffer.committed", item_id=item_id, previous_item_id=previous_id),
            event(added, previous_item_id=previous_id, item=item),
        )

    def transcript(self, reply: Reply) -> list[Outgoing]:
        if not reply.from_speech:
            return []
        stt_s = round(reply.timings.stt_ms / 1000, 3)
        kind = "conversation.item.input_audio_transcription"
        out: list[dict[str, Any]] = []
        if reply.user_text:
            # one delta with the whole transcript, as OpenAI's whisper-1 sends it: the
            # utterance is transcribed whole (at a pause already: realtime.early_stt_silence_ms)
            out.append(event(f"{kind}.delta", item_id=reply.user_item_id, content_index=0,
                             delta=reply.user_text))  # fmt: skip
        out.append(event(f"{kind}.completed", item_id=reply.user_item_id, content_index=0,
                         transcript=reply.user_text,
                         usage={"type": "duration", "seconds": stt_s}))  # fmt: skip
        if not self.names.beta:
            item = user_audio_item(reply.user_item_id, reply.user_text)
            out.append(event("conversation.item.done", item=item))
        return messages(*out)

    def _response(self, reply: Reply) -> ResponseEvents:
        events = self._responses.get(reply.response_id)
        if events is None:
            events = ResponseEvents(reply, self.names, self.session.history, self.output_rate)
            self._responses = {reply.response_id: events}  # one reply at a time
        return events

    def reply_started(self, reply: Reply) -> list[Outgoing]:
        return self._response(reply).started()

    def text_delta(self, reply: Reply, delta: str) -> list[Outgoing]:
        return self._response(reply).text_delta(delta)

    def audio(self, reply: Reply, pcm: bytes, sample_rate: int, piece: str) -> list[Outgoing]:
        return self._response(reply).audio(pcm, sample_rate)

    def function_call_delta(self, reply: Reply, call: FunctionCall, delta: str) -> list[Outgoing]:
        return self._response(reply).function_call_delta(call, delta)

    def reply_ended(self, reply: Reply, status: Status, reason: str) -> list[Outgoing]:
        if not reply.started:
            return []  # no response was announced (no words, or transcription only)
        events = self._response(reply).ended(status, reason)
        self._responses.pop(reply.response_id, None)
        return events

    def timings(self, reply: Reply) -> list[Outgoing]:
        return []  # per-turn timings are on /metrics; usage is in response.done

    def error(self, err: WireError) -> list[Outgoing]:
        return messages(error_json(err.code, err.message, err.param, err.event_id))
