"""One turn's reply: STT -> LLM stream -> sentence pieces -> TTS -> audio out, as a task.

The reply may start speculatively (at speech_stopped): everything it produces is held until
the turn is committed, then released at once; if the user resumes speaking first it is
cancelled and nobody hears of it. Cancelling the task closes the LLM stream (llama-server
stops generating and frees the slot) and drops whatever of this turn is still queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from app.engines.base import ChatParams, FloatAudio, Transcript
from app.errors import APIError
from app.pipeline import LLMTimings, llm_stream, synthesize, transcribe
from app.realtime.history import History
from app.realtime.outbox import Outbox, Overflow
from app.realtime.protocol import TurnTimings, error_event
from app.realtime.sentences import SentenceChunker
from app.state import ServiceState

AUDIO_MESSAGE_BYTES = 32 * 1024


@dataclass
class ReplyContext:
    """What a session lends each of its replies."""

    state: ServiceState
    outbox: Outbox
    history: History
    slot: int | None
    max_tokens: int
    temperature: float
    on_overflow: Callable[[Overflow], None]


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
        committed: bool,
        t_vad_end: float,
        t_last_voiced: float,
        restarts: int = 0,
        early: EarlyTranscript | None = None,
    ) -> None:
        self.ctx = ctx
        self.early = early
        self.turn = turn
        self.committed = committed
        self.cancelled = False
        self.finished = False  # the pipeline ran to its end
        self.finalized = False  # finished and committed: in the history, timings sent
        self.user_text = text or ""
        self.reply_parts: list[str] = []
        self.t_vad_end = t_vad_end
        self.t_last_voiced = t_last_voiced
        self.t_first_audio: float | None = None
        self.audio_s = 0.0
        self.timings = TurnTimings(turn=turn, speculative_restarts=restarts)
        self._held: list[tuple[dict[str, Any], bytes | None]] = []
        self._messages: list[dict[str, str]] = []
        self._llm = LLMTimings()
        self.task = asyncio.create_task(self._run(audio))

    # --- output -------------------------------------------------------------------------
    def _emit(self, event: dict[str, Any], audio: bytes | None = None) -> None:
        if self.cancelled:
            return
        if not self.committed:
            self._held.append((event, audio))
            return
        if audio is not None and self.t_first_audio is None:
            self.t_first_audio = time.perf_counter()
        try:
            self.ctx.outbox.put(event, audio)
        except Overflow as exc:
            self.ctx.on_overflow(exc)

    def commit(self) -> None:
        if self.committed or self.cancelled:
            return
        self.committed = True
        held, self._held = self._held, []
        for event, audio in held:
            self._emit(event, audio)
        if self.finished:
            self._finalize()

    def playing(self, now: float) -> bool:
        """Generating, or its audio is (by the clock) still being played by the client."""
        if not self.committed or self.cancelled:
            return False
        if not self.finished:
            return True
        return self.t_first_audio is not None and now < self.t_first_audio + self.audio_s

    def cancel(self, reason: str) -> bool:
        """Stop the reply; a committed one tells the client (response.cancelled)."""
        if self.cancelled:
            return False
        was_running = not self.task.done()
        self.task.cancel()
        self._held = []
        metrics = self.ctx.state.metrics
        if self.committed:
            self.ctx.outbox.drop_turn(self.turn)
            self._emit({"type": "response.cancelled", "turn": self.turn, "reason": reason})
            if not self.finalized and self.user_text:
                # what was said so far stays in the conversation (and the slot's cache)
                self.ctx.history.add(self.user_text, "".join(self.reply_parts))
            metrics.realtime_turns.labels("cancelled" if was_running else "interrupted").inc()
        else:
            metrics.realtime_turns.labels("merged").inc()
        self.cancelled = True
        return True

    # --- the pipeline -------------------------------------------------------------------
    async def _run(self, audio: FloatAudio | None) -> None:
        try:
            await self._pipeline(audio)
        except asyncio.CancelledError:
            raise
        except APIError as exc:
            if exc.code == "context_length_exceeded":
                self.ctx.history.turns.clear()
            self._emit(error_event(exc.code or "error", exc.message))
            self._emit({"type": "response.cancelled", "turn": self.turn, "reason": "error"})
            self.ctx.state.metrics.realtime_turns.labels("error").inc()
            self.cancelled = True
            return
        self.finished = True
        if self.committed:
            self._finalize()

    async def _pipeline(self, audio: FloatAudio | None) -> None:
        state = self.ctx.state
        if audio is not None:
            if self.early is not None:
                transcript, stt_s = await self.early.task
                self.timings.early_transcript = True
            else:
                transcript, stt_s = await transcribe(state, audio)
            self.user_text = transcript.text
            self.timings.stt_ms = _ms(stt_s)
            self.timings.vad_end_to_transcript_ms = _ms(time.perf_counter() - self.t_vad_end)
        self._emit({"type": "transcript", "turn": self.turn, "text": self.user_text})
        if not self.user_text:
            self._emit({"type": "response.done", "turn": self.turn, "text": "",
                        "finish_reason": "no_speech"})  # fmt: skip
            return
        history = self.ctx.history
        self._messages = history.messages(self.user_text, self.ctx.max_tokens)
        self.timings.history_turns = len(history.turns)
        pieces: asyncio.Queue[str | None] = asyncio.Queue()
        producer = asyncio.create_task(self._generate(pieces))
        try:
            while (piece := await pieces.get()) is not None:
                await self._speak(piece)
            await producer  # its error, if any
        finally:
            if not producer.done():
                producer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await producer
        self._emit({"type": "response.done", "turn": self.turn,
                    "text": "".join(self.reply_parts),
                    "finish_reason": self._llm.finish_reason})  # fmt: skip

    async def _generate(self, pieces: asyncio.Queue[str | None]) -> None:
        rt = self.ctx.state.settings.realtime
        chunker = SentenceChunker(rt.chunk_max_chars, rt.first_chunk_min_chars)
        params = ChatParams(
            max_tokens=self.ctx.max_tokens, temperature=self.ctx.temperature, slot=self.ctx.slot
        )
        try:
            stream = llm_stream(self.ctx.state, self._messages, params, self._llm)
            async with aclosing(stream) as chunks:
                async for chunk in chunks:
                    if not chunk.text:
                        continue
                    if not self.reply_parts:
                        elapsed = time.perf_counter() - self.t_vad_end
                        self.timings.vad_end_to_llm_first_token_ms = _ms(elapsed)
                    self.reply_parts.append(chunk.text)
                    self._emit({"type": "response.text.delta", "turn": self.turn,
                                "delta": chunk.text})  # fmt: skip
                    for piece in chunker.push(chunk.text):
                        pieces.put_nowait(piece)
            for piece in chunker.flush():
                pieces.put_nowait(piece)
        finally:
            pieces.put_nowait(None)

    async def _speak(self, piece: str) -> None:
        pcm, _ = await synthesize(self.ctx.state, piece)
        rate = self.ctx.state.require_tts().sample_rate
        data = pcm.astype("<i2").tobytes()
        self.audio_s += len(pcm) / rate
        for start in range(0, len(data), AUDIO_MESSAGE_BYTES):
            part = data[start : start + AUDIO_MESSAGE_BYTES]
            event = {"type": "response.audio", "turn": self.turn, "bytes": len(part),
                     "sample_rate": rate, "text": piece}  # fmt: skip
            self._emit(event, part)

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
        t.llm_ttft_ms = _ms(self._llm.ttft_s)
        t.prompt_tokens = self._llm.prompt_tokens
        t.completion_tokens = self._llm.completion_tokens
        reply = "".join(self.reply_parts)
        if self.user_text:
            history = self.ctx.history
            if self._messages and t.prompt_tokens:
                history.calibrate(self._messages, t.prompt_tokens)
            history.add(self.user_text, reply)
        self._emit(t.event())
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
