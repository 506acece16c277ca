"""The events of one OpenAI Realtime response, from response.created to response.done.

A response's output items appear as they start: the assistant message (with its audio or
text content part) at its first text, each function call at its first tool-call delta, in
the order they come (`output_index`). The end closes every item that was opened, then
`response.done` lists them: the one terminal event of the response (docs/realtime.md).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from app.realtime.audio_out import PcmResampler
from app.realtime.openai_items import Names, call_json, event, reply_item, response_json
from app.realtime.outbox import Outgoing, messages
from app.realtime.wire import Status

if TYPE_CHECKING:
    from app.realtime.history import History
    from app.realtime.respond import FunctionCall, Reply

AUDIO_DELTA_BYTES = 24 * 1024  # PCM per audio delta (0.5 s at 24 kHz)


@dataclass
class ResponseEvents:
    reply: Reply
    names: Names
    history: History
    output_rate: int
    order: list[str] = field(default_factory=list)  # item ids by output_index
    resampler: PcmResampler | None = None

    def _added(self, item: dict[str, Any]) -> list[dict[str, Any]]:
        self.order.append(item["id"])
        kind = "conversation.item.created" if self.names.beta else "conversation.item.added"
        return [
            event("response.output_item.added", response_id=self.reply.response_id,
                  output_index=len(self.order) - 1, item=item),
            event(kind, previous_item_id=self.history.previous_id(), item=item),
        ]  # fmt: skip

    def _ids(self) -> dict[str, Any]:
        r = self.reply
        return {"response_id": r.response_id, "item_id": r.item_id,
                "output_index": self.order.index(r.item_id), "content_index": 0}  # fmt: skip

    def _message(self) -> list[dict[str, Any]]:
        """Open the assistant message item, once."""
        r = self.reply
        if r.item_id in self.order:
            return []
        audio = r.ctx.audio_out
        events = self._added(reply_item(r, self.names, "in_progress", audio))
        part = {"type": "audio" if audio else "text", ("transcript" if audio else "text"): ""}
        events.append(event("response.content_part.added", part=part, **self._ids()))
        return events

    def started(self) -> list[Outgoing]:
        r = self.reply
        return messages(
            event("response.created", response=response_json(r, self.names, "in_progress"))
        )

    def text_delta(self, delta: str) -> list[Outgoing]:
        events = self._message()
        kind = self.names.transcript_delta if self.reply.ctx.audio_out else self.names.text_delta
        events.append(event(kind, delta=delta, **self._ids()))
        return messages(*events)

    def audio(self, pcm: bytes, sample_rate: int) -> list[Outgoing]:
        if self.resampler is None:
            self.resampler = PcmResampler(sample_rate, self.output_rate)
        out = messages(*self._message())
        data = self.resampler.convert(pcm)
        for start in range(0, len(data), AUDIO_DELTA_BYTES):
            b64 = base64.b64encode(data[start : start + AUDIO_DELTA_BYTES]).decode()
            message = event(self.names.audio_delta, delta=b64, **self._ids())
            out.append(Outgoing(message, droppable=True, inline_bytes=len(b64)))
        return out

    def function_call_delta(self, call: FunctionCall, delta: str) -> list[Outgoing]:
        events = []
        if call.item_id not in self.order:
            events += self._added(call_json(call.item_id, call.call_id, call.name, "",
                                            "in_progress"))  # fmt: skip
        if delta:
            events.append(event("response.function_call_arguments.delta",
                                response_id=self.reply.response_id, item_id=call.item_id,
                                output_index=self.order.index(call.item_id),
                                call_id=call.call_id, delta=delta))  # fmt: skip
        return messages(*events)

    def ended(self, status: Status, reason: str) -> list[Outgoing]:
        r = self.reply
        item_status = "completed" if status == "completed" else "incomplete"
        outputs: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        for index, item_id in enumerate(self.order):
            if item_id == r.item_id:
                item = reply_item(r, self.names, item_status, r.ctx.audio_out)
                events += self._message_done(item)
            else:
                call = next(c for c in r.calls.values() if c.item_id == item_id)
                item = call_json(item_id, call.call_id, call.name, call.arguments, item_status)
                events.append(event("response.function_call_arguments.done",
                                    response_id=r.response_id, item_id=item_id,
                                    output_index=index, call_id=call.call_id, name=call.name,
                                    arguments=call.arguments))  # fmt: skip
            events.append(event("response.output_item.done", response_id=r.response_id,
                                output_index=index, item=item))  # fmt: skip
            if not self.names.beta:
                events.append(event("conversation.item.done", item=item))
            outputs.append(item)
        response = response_json(r, self.names, status, reason, output=outputs)
        if r.finalized:  # the unit's extension: where the turn's time went (docs/realtime.md)
            response["voicefleet_timings"] = r.timings.fields()
        events.append(event("response.done", response=response))
        return messages(*events)

    def _message_done(self, item: dict[str, Any]) -> list[dict[str, Any]]:
        r = self.reply
        ids = self._ids()
        if r.ctx.audio_out:
            events = [event(self.names.audio_done, **ids),
                      event(self.names.transcript_done, transcript=r.text, **ids)]  # fmt: skip
        else:
            events = [event(self.names.text_done, text=r.text, **ids)]
        part = item["content"][0] | {"type": "audio" if r.ctx.audio_out else "text"}
        events.append(event("response.content_part.done", part=part, **ids))
        return events
