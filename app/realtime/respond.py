"""One reply: (STT) -> LLM stream -> sentence pieces -> TTS -> audio out, as a task.

The reply may start speculatively (at speech_stopped): everything it produces is held until
the turn is committed, then released at once; if the user resumes speaking first it is
cancelled and nobody hears of it. Cancelling the task closes the LLM stream (llama-server
stops generating and frees the slot) and drops whatever audio of this turn is still queued.

What the client receives of a reply ends with exactly one terminal message (`reply_ended`):
`completed` once the whole reply was generated and queued, or `cancelled` when it was stopped
before that. A barge-in after the reply was complete cancels nothing more on the wire (the
client stops its own playback at speech_started); it only cuts the history to what was heard.
Each finished turn is counted once in voicefleet_realtime_turns_total.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable
from contextlib import aclosing
from dataclasses import dataclass, field

from app.engines.base import ChatMessage, ChatParams, FloatAudio, Tool, ToolChoice, Transcript
from app.errors import APIError
from app.pipeline import LLMTimings, llm_stream, synthesize, transcribe
from app.realtime.heard import Spoken
from app.realtime.history import History, Item, new_item_id
from app.realtime.outbox import Outbox, Outgoing, Overflow
from app.realtime.prefill import Prefill
from app.realtime.protocol import TurnTimings
from app.realtime.sentences import SentenceChunker
from app.realtime.wire import Status, Wire, WireError
from app.state import ServiceState

_responses = itertools.count(1)


@dataclass
class ReplyContext:
    """What a session lends each of its replies."""

    state: ServiceState
    wire: Wire
    outbox: Outbox
    history: History
    slot: int | None
    max_tokens: int
    temperature: float
    audio_out: bool  # speak the reply (False: text only)
    on_overflow: Callable[[Overflow], None]
    tools: list[Tool] = field(default_factory=list)
    tool_choice: ToolChoice = "auto"
    prefill: Prefill | None = None  # the session's (realtime.prefill_llm)

    def chat_params(self) -> ChatParams:
        """What a reply asks of the LLM (a prefill asks the same, so its prompt is the
        reply's prefix)."""
        return ChatParams(
            max_tokens=self.max_tokens, temperature=self.temperature, slot=self.slot,
            tools=self.tools, tool_choice=self.tool_choice if self.tools else "auto",
        )  # fmt: skip


@dataclass
class FunctionCall:
    """A tool call the reply is making (streamed by the LLM engine as ToolCallDeltas)."""

    item_id: str
    call_id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass
class EarlyTranscript:
    """An STT pass started at a pause, before speech_stopped; `last_voiced_ms` is the end of
    the speech it covers (a stop with the same end had no new speech since)."""

    task: asyncio.Task[tuple[Transcript, float]]
    last_voiced_ms: int

    def __post_init__(self) -> None:
        # an early pass nobody waits for (speech went on) still ends; its error is not news
        self.task.add_done_callback(lambda t: t.cancelled() or t.exception())


def _ms(seconds: float) -> float:
    return seconds * 1000.0


class Reply:
    def __init__(
        self,
        ctx: ReplyContext,
        turn: int,
        *,
        audio: FloatAudio | None = None,
        text: str | None = None,
        user_item_id: str | None = None,
        respond: bool = True,
        committed: bool,
        t_vad_end: float,
        t_last_voiced: float,
        restarts: int = 0,
        after: list[asyncio.Task[None]] | None = None,
        early: EarlyTranscript | None = None,
    ) -> None:
        self.ctx = ctx
        self._after = after or []
        self.early = early
        self.turn = turn
        self.committed = committed
        self.respond = respond
        self.cancelled = False
        self.finished = False  # the pipeline ran to its end
        self.finalized = False  # finished and committed: in the history, timings sent
        # a new user request (speech or typed) comes with the reply; without one the reply
        # answers the conversation as it stands (response.create)
        self.has_input = audio is not None or text is not None
        self.from_speech = audio is not None
        self.started = False  # reply_started was emitted: a response exists on the wire
        self.user_text = text or ""
        self.user_item_id = user_item_id or new_item_id()
        self.user_item: Item | None = None
        self.item_id = new_item_id()  # the assistant's item
        self.response_id = f"resp_{next(_responses):06d}"
        self.reply_parts: list[str] = []
        self.spoken = Spoken()
        self.status: Status = "completed"
        self.t_vad_end = t_vad_end
        self.t_last_voiced = t_last_voiced
        self.t_first_audio: float | None = None
        self.audio_s = 0.0  # audio released to the client
        self.timings = TurnTimings(turn=turn, speculative_restarts=restarts)
        self.llm = LLMTimings()
        self._held: list[Outgoing] = []
        self._messages: list[ChatMessage] = []
        self.calls: dict[int, FunctionCall] = {}  # by the engine's call index
        self._transcribed = audio is None
        self.task = asyncio.create_task(self._run(audio))

    @property
    def text(self) -> str:
        return "".join(self.reply_parts)

    # --- output -------------------------------------------------------------------------
    def _emit(self, messages: list[Outgoing]) -> None:
        for message in messages:
            if self.cancelled:
                return
            message.turn = self.turn
            if not self.committed:
                self._held.append(message)
                continue
            if message.droppable and self.t_first_audio is None:
                self.t_first_audio = time.perf_counter()
            try:
                self.ctx.outbox.put_item(message)
            except Overflow as exc:
                self.ctx.on_overflow(exc)

    def commit(self) -> None:
        if self.committed or self.cancelled:
            return
        self.committed = True
        self._add_user()
        held, self._held = self._held, []
        self._emit(held)
        if self.finished:
            self._finalize()

    def _add_user(self) -> None:
        """The request joins the history once its turn is final and its words are known."""
        if self.user_item is None and self.committed and self._transcribed and self.user_text:
            item = Item(self.user_item_id, "user", self.user_text, audio_input=self.from_speech)
            self.user_item = self.ctx.history.append(item)

    def playing(self, now: float) -> bool:
        """Generating, or its audio is (by the clock) still being played by the client."""
        if not self.committed or self.cancelled or not self.respond:
            return False
        if not self.finished:
            return True
        return self.t_first_audio is not None and now < self.t_first_audio + self.audio_s

    def heard_text(self, now: float) -> str:
        """The server's estimate of what was heard by `now` (docs/realtime.md)."""
        if not self.ctx.audio_out:
            return self.text
        if self.t_first_audio is None:
            return ""
        return self.spoken.heard(min(self.audio_s, now - self.t_first_audio), within_piece=False)

    def cancel(self, reason: str, now: float | None = None) -> bool:
        """Stop the reply. A committed one keeps, in the history, what the user heard by
        `now` (the moment speech started, for a barge-in)."""
        if self.cancelled:
            return False
        self.task.cancel()
        self._held = []
        metrics = self.ctx.state.metrics
        at = time.perf_counter() if now is None else now
        if not self.committed:
            metrics.realtime_turns.labels("merged").inc()
        elif self.finalized:
            # complete on the wire already: only the history learns of the cut
            self.ctx.outbox.drop_turn(self.turn)
            if reason != "disconnected":
                self._cut_history(at)
        else:
            self.ctx.outbox.drop_turn(self.turn)
            self.status = "cancelled"
            self._emit(self.ctx.wire.reply_ended(self, "cancelled", reason))
            self._add_user()
            if self.reply_parts and self.respond:
                self._add_assistant(self.heard_text(at))
            outcome = "interrupted" if reason == "barge_in" else "cancelled"
            metrics.realtime_turns.labels(outcome).inc()
        self.cancelled = True
        return True

    def _add_assistant(self, text: str) -> None:
        item = Item(self.item_id, "assistant", text, spoken=self.spoken)
        self.ctx.history.append(item)

    def _cut_history(self, now: float) -> None:
        item = self.ctx.history.get(self.item_id)
        if item is not None:
            item.text = self.heard_text(now)

    # --- the pipeline -------------------------------------------------------------------
    async def _run(self, audio: FloatAudio | None) -> None:
        try:
            await self._pipeline(audio)
        except asyncio.CancelledError:
            raise
        except APIError as exc:
            if exc.code == "context_length_exceeded":
                self.ctx.history.items.clear()
            wire = self.ctx.wire
            self._emit(wire.error(WireError(exc.code or "error", exc.message)))
            self.status = "failed"
            self._emit(wire.reply_ended(self, "failed", exc.code or "error"))
            self.ctx.state.metrics.realtime_turns.labels("error").inc()
            self.cancelled = True
            return
        self.finished = True
        if self.committed:
            self._finalize()

    async def _pipeline(self, audio: FloatAudio | None) -> None:
        state = self.ctx.state
        wire = self.ctx.wire
        if audio is not None:
            if self.early is not None:
                transcript, stt_s = await self.early.task
                self.timings.early_transcript = True
            else:
                transcript, stt_s = await transcribe(state, audio)
            self.user_text = transcript.text
            self.timings.stt_ms = _ms(stt_s)
            self.timings.vad_end_to_transcript_ms = _ms(time.perf_counter() - self.t_vad_end)
            self._transcribed = True
        # a committed request joins the history now; a typed one (input_text) too, which
        # was only ever in its own prompt and missing from the next turn's
        self._add_user()
        if self.has_input:
            self._emit(wire.transcript(self))
            if not self.user_text:
                return  # no words: nothing to answer
        if not self.respond:
            return
        if self._after:  # transcriptions of committed input still running
            await asyncio.wait(self._after)
        if self.ctx.prefill is not None:  # the prefill in flight goes first (prefill.py)
            settled = await self.ctx.prefill.settle()
            self.timings.prefills = settled.prefills
            self.timings.prefill_tokens = settled.tokens
            self.timings.prefill_wait_ms = settled.wait_ms
        history = self.ctx.history
        pending = self.user_text if self.user_item is None and self.has_input else None
        self._messages = history.messages(pending, self.ctx.max_tokens)
        self.timings.history_turns = history.turns - (0 if pending else 1)
        self.started = True
        self._emit(wire.reply_started(self))
        pieces: asyncio.Queue[str | None] = asyncio.Queue()
        producer = asyncio.create_task(self._generate(pieces))
        try:
            while (piece := await pieces.get()) is not None:
                if self.ctx.audio_out:
                    await self._speak(piece)
            await producer  # its error, if any
        finally:
            if not producer.done():
                producer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await producer

    async def _generate(self, pieces: asyncio.Queue[str | None]) -> None:
        rt = self.ctx.state.settings.realtime
        chunker = SentenceChunker(rt.chunk_max_chars, rt.first_chunk_min_chars)
        try:
            stream = llm_stream(self.ctx.state, self._messages, self.ctx.chat_params(), self.llm)
            async with aclosing(stream) as chunks:
                async for chunk in chunks:
                    for delta in chunk.tool_calls:
                        call = self.calls.setdefault(delta.index, FunctionCall(new_item_id()))
                        call.call_id = delta.id or call.call_id
                        call.name = delta.name or call.name
                        call.arguments += delta.arguments
                        self._emit(self.ctx.wire.function_call_delta(self, call, delta.arguments))
                    if not chunk.text:
                        continue
                    if not self.reply_parts:
                        elapsed = time.perf_counter() - self.t_vad_end
                        self.timings.vad_end_to_llm_first_token_ms = _ms(elapsed)
                    self.reply_parts.append(chunk.text)
                    self._emit(self.ctx.wire.text_delta(self, chunk.text))
                    for piece in chunker.push(chunk.text):
                        pieces.put_nowait(piece)
            for piece in chunker.flush():
                pieces.put_nowait(piece)
        finally:
            pieces.put_nowait(None)

    async def _speak(self, piece: str) -> None:
        pcm, _ = await synthesize(self.ctx.state, piece)
        rate = self.ctx.state.require_tts().sample_rate
        seconds = len(pcm) / rate
        self.spoken.add(self.text, piece, seconds)
        self.audio_s += seconds
        self._emit(self.ctx.wire.audio(self, pcm.astype("<i2").tobytes(), rate, piece))

    def _finalize(self) -> None:
        if self.finalized or self.cancelled:
            return
        self.finalized = True
        t = self.timings
        now = time.perf_counter()
        t.total_ms = _ms(now - self.t_vad_end)
        if self.t_first_audio is not None:
            t.vad_end_to_first_audio_ms = _ms(self.t_first_audio - self.t_vad_end)
            t.last_voiced_to_first_audio_ms = _ms(self.t_first_audio - self.t_last_voiced)
        t.llm_ttft_ms = _ms(self.llm.ttft_s)
        t.prompt_tokens = self.llm.prompt_tokens
        t.prompt_cached_tokens = self.llm.cached_tokens
        t.completion_tokens = self.llm.completion_tokens
        if self._messages and t.prompt_tokens:
            self.ctx.history.calibrate(self._messages, t.prompt_tokens)
        if self._messages:
            self.spoken.text = self.text
            if self.text or not self.calls:
                self._add_assistant(self.text)
            for call in self.calls.values():
                self.ctx.history.append(Item(call.item_id, "function_call", call.arguments,
                                             call_id=call.call_id, name=call.name))  # fmt: skip
        if self.llm.finish_reason == "length" and self.status == "completed":
            self.status = "incomplete"
        wire = self.ctx.wire
        self._emit(wire.reply_ended(self, self.status, self.llm.finish_reason))
        self._emit(wire.timings(self))
        self._observe(t)

    def _observe(self, t: TurnTimings) -> None:
        metrics = self.ctx.state.metrics
        metrics.realtime_turns.labels("done").inc()
        stages = metrics.realtime_turn_seconds
        if t.vad_end_to_transcript_ms:
            stages.labels("vad_end_to_transcript").observe(t.vad_end_to_transcript_ms / 1000)
        if t.vad_end_to_llm_first_token_ms:
            stages.labels("llm_first_token").observe(t.vad_end_to_llm_first_token_ms / 1000)
        if self.t_first_audio is not None:
            stages.labels("first_audio").observe(t.vad_end_to_first_audio_ms / 1000)
        stages.labels("total").observe(t.total_ms / 1000)
