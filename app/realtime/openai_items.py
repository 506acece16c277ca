"""OpenAI Realtime objects (items, responses, usage, errors) in the GA or the beta shape.

The names that differ between the two API versions live here (`Names`), so the adapter
(openai_wire.py) is written once: GA `response.output_audio.delta`, content `output_audio`,
`conversation.item.added|done`; beta `response.audio.delta`, content `audio`,
`conversation.item.created`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.realtime.history import Item

if TYPE_CHECKING:
    from app.realtime.respond import Reply

_events = itertools.count(1)


def event(kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "event_id": f"event_{next(_events):08d}", **fields}


@dataclass(frozen=True)
class Names:
    beta: bool

    def _v(self, ga: str, beta: str) -> str:
        return beta if self.beta else ga

    @property
    def audio_delta(self) -> str:
        return self._v("response.output_audio.delta", "response.audio.delta")

    @property
    def audio_done(self) -> str:
        return self._v("response.output_audio.done", "response.audio.done")

    @property
    def transcript_delta(self) -> str:
        return self._v("response.output_audio_transcript.delta", "response.audio_transcript.delta")

    @property
    def transcript_done(self) -> str:
        return self._v("response.output_audio_transcript.done", "response.audio_transcript.done")

    @property
    def text_delta(self) -> str:
        return self._v("response.output_text.delta", "response.text.delta")

    @property
    def text_done(self) -> str:
        return self._v("response.output_text.done", "response.text.done")

    @property
    def modalities(self) -> str:
        return self._v("output_modalities", "modalities")

    def out_content(self, audio: bool) -> str:
        if audio:
            return self._v("output_audio", "audio")
        return self._v("output_text", "text")


def call_json(item_id: str, call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    return {"id": item_id, "object": "realtime.item", "type": "function_call",
            "status": status, "call_id": call_id, "name": name,
            "arguments": arguments}  # fmt: skip


def item_json(item: Item, names: Names, status: str = "completed") -> dict[str, Any]:
    if item.role == "function_call":
        return call_json(item.id, item.call_id, item.name, item.text, status)
    if item.role == "tool":
        return {"id": item.id, "object": "realtime.item", "type": "function_call_output",
                "status": status, "call_id": item.call_id, "output": item.text}  # fmt: skip
    content: dict[str, Any]
    if item.role == "assistant":
        audio = item.spoken is not None and bool(item.spoken.pieces)
        content = {"type": names.out_content(audio)}
        content["transcript" if audio else "text"] = item.text
    elif item.audio_input:
        content = {"type": "input_audio", "transcript": item.text}
    else:
        content = {"type": "input_text", "text": item.text}
    return {"id": item.id, "object": "realtime.item", "type": "message", "role": item.role,
            "status": status, "content": [content]}  # fmt: skip


def user_audio_item(item_id: str, transcript: str | None) -> dict[str, Any]:
    return {"id": item_id, "object": "realtime.item", "type": "message", "role": "user",
            "status": "completed",
            "content": [{"type": "input_audio", "transcript": transcript}]}  # fmt: skip


def reply_item(reply: Reply, names: Names, status: str, audio: bool) -> dict[str, Any]:
    key = "transcript" if audio else "text"
    text = reply.text if status != "in_progress" else ""
    part = {"type": names.out_content(audio), key: text}
    return {"id": reply.item_id, "object": "realtime.item", "type": "message",
            "role": "assistant", "status": status,
            "content": [part] if status != "in_progress" else []}  # fmt: skip


def usage(reply: Reply) -> dict[str, Any]:
    prompt, completion = reply.llm.prompt_tokens, reply.llm.completion_tokens
    return {
        "total_tokens": prompt + completion,
        "input_tokens": prompt,
        "output_tokens": completion,
        "input_token_details": {"text_tokens": prompt, "audio_tokens": 0},
        "output_token_details": {"text_tokens": completion, "audio_tokens": 0},
    }


_CANCEL_REASONS = {"barge_in": "turn_detected", "client": "client_cancelled"}


def response_json(
    reply: Reply, names: Names, status: str, reason: str = "", output: list[Any] | None = None
) -> dict[str, Any]:
    audio = reply.ctx.audio_out
    body: dict[str, Any] = {
        "id": reply.response_id,
        "object": "realtime.response",
        "status": status,
        "status_details": None,
        "output": output or [],
        "conversation_id": "conv_default",
        names.modalities: ["audio"] if audio else ["text"],
        "max_output_tokens": reply.ctx.max_tokens,
        "usage": None,
    }
    if status == "cancelled":
        why = _CANCEL_REASONS.get(reason, "client_cancelled")
        body["status_details"] = {"type": "cancelled", "reason": why}
    elif status == "incomplete":
        body["status_details"] = {"type": "incomplete", "reason": "max_output_tokens"}
    elif status == "failed":
        body["status_details"] = {"type": "failed", "error": {"type": "server_error",
                                                              "code": reason}}  # fmt: skip
    if status != "in_progress":
        body["usage"] = usage(reply)
    return body


def error_json(code: str, message: str, param: str | None, event_id: str | None) -> dict[str, Any]:
    kind = "server_error" if code in ("internal_error", "error") else "invalid_request_error"
    return event("error", error={"type": kind, "code": code, "message": message,
                                 "param": param, "event_id": event_id})  # fmt: skip
