"""handle: `transcript` → `handled` (the LLM through pipeline.llm_stream, the configured system
prompt, max_tokens within llm.max_tokens_cap; the history of Home Assistant's conversation_id
is kept). Streamed (wyoming.streaming): `handled-start`, a `handled-chunk` per sentence piece as
the LLM writes it (the realtime endpoint's sentence cutter: the first piece may end at a clause
break, so Home Assistant can start speaking early), `handled` (the whole reply), `handled-stop`.
"""

from __future__ import annotations

from collections import OrderedDict
from contextlib import aclosing
from typing import Any

from wyoming.asr import Transcript
from wyoming.handle import Handled, HandledChunk, HandledStart, HandledStop

from app.engines.base import ChatParams
from app.errors import APIError
from app.pipeline import LLMTimings, complete, llm_stream, resolve_max_tokens
from app.realtime.history import History
from app.realtime.sentences import SentenceChunker
from app.state import ServiceState
from app.wyoming.events import Sender, wants_streaming


class Histories:
    """handle: conversation histories by Home Assistant's conversation_id, least recently
    used forgotten first."""

    def __init__(self, state: ServiceState) -> None:
        self._state = state
        self._by_id: OrderedDict[str, History] = OrderedDict()

    def get(self, conversation_id: str | None) -> History:
        s = self._state.settings
        if conversation_id is None:
            return History(s.llm.system_prompt, s.llm.ctx_per_slot, s.realtime.history_low_water)
        history = self._by_id.get(conversation_id)
        if history is None:
            history = History(s.llm.system_prompt, s.llm.ctx_per_slot, s.realtime.history_low_water)
            self._by_id[conversation_id] = history
            while len(self._by_id) > s.wyoming.max_conversations:
                self._by_id.popitem(last=False)
        self._by_id.move_to_end(conversation_id)
        return history

    def __len__(self) -> int:
        return len(self._by_id)


class Agent:
    """One connection's conversation agent."""

    def __init__(self, state: ServiceState, histories: Histories, link: Sender) -> None:
        self.state = state
        self.histories = histories
        self.link = link

    async def converse(self, transcript: Transcript) -> None:
        s = self.state.settings
        self.state.metrics.wyoming_requests.labels("handle").inc()
        self.state.require_engines()
        text = str(transcript.text).strip()
        if not text:
            raise APIError(400, "the transcript is blank", code="empty_input")
        if len(text) > s.limits.max_input_chars:
            raise APIError(
                400,
                f"the transcript is {len(text)} characters; the limit is "
                f"{s.limits.max_input_chars}",
                code="input_too_long",
            )
        context = transcript.context if isinstance(transcript.context, dict) else {}
        streaming = wants_streaming(s.wyoming.streaming, context)
        conversation_id = context.get("conversation_id")
        if not isinstance(conversation_id, str) or not conversation_id:
            conversation_id = None
        history = self.histories.get(conversation_id)
        max_tokens = resolve_max_tokens(self.state, s.wyoming.max_tokens)
        messages = history.messages(text, max_tokens)
        params = ChatParams(max_tokens=max_tokens, temperature=s.wyoming.temperature)
        if streaming:
            reply, timings = await self._stream(messages, params, context)
        else:
            whole, timings = await complete(self.state, messages, params)
            reply = whole.strip()
        history.calibrate(messages, timings.prompt_tokens)
        history.add(text, reply)
        await self.link.send(Handled(text=reply, context=context or None).event())
        if streaming:
            await self.link.send(HandledStop().event())

    async def _stream(
        self, messages: list[dict[str, str]], params: ChatParams, context: dict[str, Any]
    ) -> tuple[str, LLMTimings]:
        """handled-start, then a handled-chunk per piece; returns the reply the chunks spell
        (pieces joined by a space: the first chunk has none before it, the others one)."""
        rt = self.state.settings.realtime
        chunker = SentenceChunker(rt.chunk_max_chars, rt.first_chunk_min_chars)
        timings = LLMTimings()
        pieces: list[str] = []
        async with aclosing(llm_stream(self.state, messages, params, timings)) as chunks:
            # the first token before handled-start: a refusal (busy, context overflow) is a
            # plain not-handled, not a stream broken off
            first = await anext(chunks, None)
            await self.link.send(HandledStart(context=context or None).event())
            if first is not None:
                for piece in chunker.push(first.text):
                    await self._chunk(piece, pieces)
                async for chunk in chunks:
                    for piece in chunker.push(chunk.text):
                        await self._chunk(piece, pieces)
        for piece in chunker.flush():
            await self._chunk(piece, pieces)
        return " ".join(pieces), timings

    async def _chunk(self, piece: str, pieces: list[str]) -> None:
        text = f" {piece}" if pieces else piece
        pieces.append(piece)
        await self.link.send(HandledChunk(text=text).event())
