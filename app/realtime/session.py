"""One realtime connection, whatever its wire protocol: the realtime engine.

Tasks per session: the receive loop (this coroutine: messages -> the protocol adapter
(`wire.py`) -> audio into the VAD and turn detection, or control calls), one reply task at a
time (app.realtime.respond), and the sender draining the bounded outbox. Receiving never
waits on sending, and sending never waits on the engines, so a slow reader stalls nobody but
itself. Any way out (disconnect, close, limit, error) cancels the reply, which closes the
LLM stream and frees the llama-server slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from app.engines.base import FloatAudio, Tool, ToolChoice
from app.pipeline import transcribe
from app.realtime.audio_in import FrameDecoder
from app.realtime.history import History, Item, Role, new_item_id
from app.realtime.outbox import Outbox, Outgoing, Overflow
from app.realtime.prefill import Prefill
from app.realtime.protocol import (
    CLOSE_IDLE,
    CLOSE_INTERNAL,
    CLOSE_NORMAL,
    CLOSE_PROTOCOL,
    CLOSE_SESSION_TOO_LONG,
    CLOSE_SLOW_READER,
    CLOSE_TOO_BIG,
)
from app.realtime.respond import EarlyTranscript, Reply, ReplyContext
from app.realtime.turns import TurnConfig, TurnDetector, TurnEvent
from app.realtime.vad import StreamingVAD
from app.realtime.wire import Wire, WireError
from app.state import ServiceState

WireFactory = Callable[["Session"], Wire]

log = logging.getLogger("voicefleet.realtime")


class _Close(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Session:
    def __init__(
        self,
        ws: WebSocket,
        state: ServiceState,
        session_id: str,
        slot: int | None,
        wire: WireFactory,
    ) -> None:
        self.ws = ws
        self.state = state
        self.id = session_id
        self.slot = slot
        self.cfg = state.settings.realtime
        llm = state.settings.llm
        self.outbox = Outbox(self.cfg.max_send_buffer_bytes)
        self.history = History(llm.system_prompt, llm.ctx_per_slot, self.cfg.history_low_water)
        self.decoder = FrameDecoder(self.cfg.default_sample_rate)
        self.vad = StreamingVAD()
        self.detect: TurnConfig | None = TurnConfig(self.cfg)  # None: the client commits
        self.turns = TurnDetector(self.cfg)
        self.input: list[FloatAudio] = []  # uncommitted audio when the client commits
        self.max_tokens = self.cfg.max_tokens or llm.default_max_tokens
        self.max_tokens = min(self.max_tokens, llm.max_tokens_cap)
        self.temperature = self.cfg.temperature
        self.audio_out = True
        self.tools: list[Tool] = []  # functions the model may call (OpenAI session.tools)
        self.tool_choice: ToolChoice = "auto"
        self.reply: Reply | None = None
        self._replies: list[Reply] = []  # all not finished (a transcription may run on)
        self.speech_item = new_item_id()  # the user item the current speech will become
        # the utterance so far, transcribed at a pause (realtime.early_stt_silence_ms)
        self.early: EarlyTranscript | None = None
        # ... and evaluated into the slot while the user goes on (realtime.prefill_llm)
        prefill = self.cfg.prefill_llm and self.cfg.early_stt_silence_ms > 0
        prefill = prefill and llm.backend == "server" and llm.cache_prompt and slot is not None
        self.prefill = Prefill(state) if prefill else None
        self._prefilled_ms = -1  # the end of the words last offered to it
        self.turn = 0
        self.restarts = 0
        self.protocol_errors = 0
        self.close_reason = "client_closed"
        self._failure: _Close | None = None
        self._failed = asyncio.Event()
        self.wire = wire(self)

    # --- lifecycle ----------------------------------------------------------------------
    async def run(self) -> str:
        """Serve until the client leaves or a limit is hit; returns the close reason."""
        self.send(self.wire.session_created())
        sender = asyncio.create_task(self._send_loop())
        receiver = asyncio.create_task(self._receive_loop())
        failed = asyncio.create_task(self._failed.wait())
        code = CLOSE_NORMAL
        try:
            done, _ = await asyncio.wait(
                {receiver, failed, sender},
                timeout=self.cfg.max_session_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if not done:
                self._fail(_Close(CLOSE_SESSION_TOO_LONG, "session_too_long"), notify=True)
            elif receiver in done and receiver.exception() is not None:
                exc = receiver.exception()
                if isinstance(exc, _Close):
                    self._fail(exc, notify=False)
                else:
                    log.error("realtime session %s failed", self.id, exc_info=exc)
                    self._fail(_Close(CLOSE_INTERNAL, "internal_error"), notify=True)
            if self._failure is not None:
                code, self.close_reason = self._failure.code, self._failure.reason
        finally:
            for task in (receiver, failed):
                task.cancel()
            for reply in self._replies:
                reply.cancel("disconnected")
            if self.early is not None:
                self.early.task.cancel()
            if self.prefill is not None:
                self.prefill.close()
            if self._failure is not None and self._failure.code != CLOSE_SLOW_READER:
                # let the error event out before the close frame
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._flushed(), 2.0)
            sender.cancel()
            await asyncio.gather(receiver, failed, sender, return_exceptions=True)
            await asyncio.gather(*(r.task for r in self._replies), return_exceptions=True)
            await self._close(code)
        return self.close_reason

    async def _flushed(self) -> None:
        await self.outbox.drained()

    async def _close(self, code: int) -> None:
        if self.ws.client_state != WebSocketState.CONNECTED:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(code), 3.0)

    def _fail(self, close: _Close, notify: bool, message: str = "") -> None:
        if self._failure is not None:
            return
        self._failure = close
        if notify and close.code != CLOSE_SLOW_READER:
            self.outbox.closed = False
            with contextlib.suppress(Overflow):
                for item in self.wire.error(
                    WireError(close.reason, message or close.reason, fatal=True)
                ):
                    self.outbox.put_item(item)
        self.outbox.closed = True
        self._failed.set()

    def _overflow(self, exc: Overflow) -> None:
        self._fail(_Close(CLOSE_SLOW_READER, "slow_reader"), notify=False)

    def send(self, messages: list[Outgoing]) -> None:
        try:
            for message in messages:
                self.outbox.put_item(message)
        except Overflow as exc:
            self._overflow(exc)

    async def _send_loop(self) -> None:
        while True:
            item = await self.outbox.get()
            await self.ws.send_text(self.outbox.encode(item.event))
            if item.audio is not None:
                await self.ws.send_bytes(item.audio)

    # --- receiving ----------------------------------------------------------------------
    async def _receive_loop(self) -> None:
        while True:
            try:
                message = await asyncio.wait_for(self.ws.receive(), self.cfg.idle_timeout_s)
            except TimeoutError:
                if self.reply is not None and self.reply.playing(time.perf_counter()):
                    continue  # listening to the reply is not idling
                idle = f"nothing received for {self.cfg.idle_timeout_s:.0f} s"
                self._fail(_Close(CLOSE_IDLE, "idle_timeout"), notify=True, message=idle)
                return
            except WebSocketDisconnect:
                return
            if message["type"] == "websocket.disconnect":
                return
            data: bytes | None = message.get("bytes")
            text: str | None = message.get("text")
            size = len(data) if data is not None else len((text or "").encode())
            if size > self.cfg.max_frame_bytes:
                self._fail(_Close(CLOSE_TOO_BIG, "frame_too_large"), notify=True,
                           message=f"a message of {size} bytes is over the limit of "
                                   f"{self.cfg.max_frame_bytes}")  # fmt: skip
                return
            if data is not None:
                self.wire.on_binary(data)
            elif text is not None:
                self.wire.on_text(text)

    def protocol_error(
        self, code: str, message: str, event_id: str | None = None, param: str | None = None
    ) -> None:
        """A bad client message: an error event, and the session goes on (up to a limit)."""
        self.protocol_errors += 1
        if self.protocol_errors >= self.wire.max_protocol_errors:
            raise _Close(CLOSE_PROTOCOL, "protocol_error")
        self.send(self.wire.error(WireError(code, message, event_id=event_id, param=param)))

    # --- what the adapters call ---------------------------------------------------------
    def audio_in(self, data: bytes) -> None:
        """Whole 16-bit samples at the session's rate (the adapter checks the length)."""
        audio = self.decoder.decode(data)
        if not len(audio):
            return
        if self.detect is None:
            self.input.append(audio)
            return
        probs, windows = self.vad.process(audio)
        for event in self.turns.feed(probs, windows):
            self._on_turn_event(event)

    def set_sample_rate(self, rate: int) -> None:
        if rate != self.decoder.sample_rate:
            self.decoder = FrameDecoder(rate)

    def set_turn_detection(self, detect: TurnConfig | None) -> None:
        self.detect = detect
        if detect is not None:
            self.turns = TurnDetector(detect.settings)
        self.input = []

    def commit_input(self) -> bool:
        """The client ends the utterance (turn detection off): transcribe it into a user
        item. False when there is nothing to commit."""
        if not self.input:
            return False
        audio = np.concatenate(self.input).astype(np.float32, copy=False)
        self.input = []
        item_id, self.speech_item = self.speech_item, new_item_id()
        self.send(self.wire.input_committed(item_id, self.history.previous_id()))
        self.turn += 1
        now = time.perf_counter()
        self._start(audio=audio, user_item_id=item_id, respond=False, committed=True,
                    t_vad_end=now, t_last_voiced=now)  # fmt: skip
        return True

    def clear_input(self) -> None:
        self.input = []
        self.turns = TurnDetector(self.detect.settings if self.detect else self.cfg)

    def add_item(self, role: Role, text: str, item_id: str | None = None) -> Item:
        return self.history.append(Item(item_id or new_item_id(), role, text))

    @property
    def responding(self) -> bool:
        """A reply is being generated (a second response.create must wait)."""
        reply = self.reply
        return reply is not None and reply.respond and not reply.finished and not reply.cancelled

    def respond(self, text: str | None = None, **overrides: Any) -> Reply:
        """Reply now: to `text` (a typed request, legacy protocol) or to the conversation as
        it stands (response.create). `overrides`: max_tokens, audio_out for this reply."""
        if self.reply is not None and text is not None:
            self.reply.cancel("superseded")
        self.turn += 1
        now = time.perf_counter()
        return self._start(text=text, committed=True, t_vad_end=now, t_last_voiced=now,
                           **overrides)  # fmt: skip

    def cancel_reply(self, reason: str) -> bool:
        return self.reply is not None and self.reply.cancel(reason)

    # --- turns --------------------------------------------------------------------------
    def _context(
        self, max_tokens: int | None = None, audio_out: bool | None = None
    ) -> ReplyContext:
        return ReplyContext(
            self.state, self.wire, self.outbox, self.history, self.slot,
            max_tokens or self.max_tokens, self.temperature,
            self.audio_out if audio_out is None else audio_out, self._overflow,
            self.tools, self.tool_choice, self.prefill,
        )  # fmt: skip

    def _start(
        self, *, max_tokens: int | None = None, audio_out: bool | None = None, **kw: Any
    ) -> Reply:
        ctx = self._context(max_tokens, audio_out)
        # a reply to the conversation waits for transcriptions still running
        waits = [r.task for r in self._replies if not r.respond and not r.task.done()]
        self._replies = [r for r in self._replies if not r.task.done()]
        self.reply = Reply(ctx, self.turn, after=waits, **kw)
        self._replies.append(self.reply)
        return self.reply

    def _on_pause(self, event: TurnEvent) -> None:
        """Transcribe what was said so far, unless a pass is still running (its thread would
        go on even if cancelled): one early pass per session at a time bounds the extra CPU."""
        if event.audio is None or (self.early is not None and not self.early.task.done()):
            return
        early = EarlyTranscript(
            asyncio.create_task(transcribe(self.state, event.audio)), event.last_voiced_ms
        )
        self.early = early
        if self.prefill is not None:
            early.task.add_done_callback(lambda _: self._prefill(early))

    def _prefill(self, early: EarlyTranscript) -> None:
        """An early pass has the words so far: offer them to the slot (prefill.py) while the
        user speaks on. Not while a reply of this session is using the LLM or about to (it
        took this transcript and sends its own request; or the prefill would queue behind
        it on the slot, then overwrite its cache with an older prompt), nor words older
        than some already offered (an earlier pass ending late)."""
        task = early.task
        if self.prefill is None or task.cancelled() or task.exception() is not None:
            return
        if early.last_voiced_ms <= self._prefilled_ms or any(
            r.respond and not r.cancelled and not r.task.done() for r in self._replies
        ):
            return
        transcript, _ = task.result()
        if not transcript.text:
            return
        self._prefilled_ms = early.last_voiced_ms
        ctx = self._context()
        self.prefill.offer(self.history.messages(transcript.text, ctx.max_tokens),
                           ctx.chat_params())  # fmt: skip

    def _early_for(self, event: TurnEvent) -> EarlyTranscript | None:
        """The early transcript when it covers all the speech up to this stop."""
        early, self.early = self.early, None
        if early is not None and early.last_voiced_ms == event.last_voiced_ms:
            return early
        return None

    def _on_turn_event(self, event: TurnEvent) -> None:
        now = time.perf_counter()
        detect = self.detect or TurnConfig(self.cfg)
        if event.kind == "pause":
            self._on_pause(event)
        elif event.kind == "speech_started":
            reply = self.reply
            if reply is not None and reply.playing(now) and detect.interrupt_response:
                # heard up to the moment the speech began, not when the VAD was sure of it
                began = now - (self.turns.audio_ms - event.audio_ms) / 1000
                reply.cancel("barge_in", now=began)
            self.turn += 1
            self.restarts = 0
            self.send(self.wire.speech_started(event.audio_ms, self.speech_item, False))
        elif event.kind == "speech_resumed":
            # a pause inside one request: drop the speculative reply, keep listening
            merged = self.reply
            if merged is not None and not merged.committed:
                merged.cancel("merged")
                self.restarts += 1
                if merged.early is not None and merged.early.task.done():
                    # it took the pause's words before they could go to the slot, and may
                    # not have sent them itself: a prefill does (finding them cached if so)
                    self._prefill(merged.early)
            self.send(self.wire.speech_started(event.audio_ms, self.speech_item, True))
        elif event.kind == "speech_stopped":
            self.send(self.wire.speech_stopped(event.audio_ms, self.speech_item))
            silence_s = (event.audio_ms - event.last_voiced_ms) / 1000
            self._start(
                audio=event.audio, user_item_id=self.speech_item, committed=False,
                respond=detect.create_response, t_vad_end=now,
                t_last_voiced=now - silence_s, restarts=self.restarts,
                early=self._early_for(event),
            )  # fmt: skip
        elif event.kind == "commit" and self.reply is not None:
            item_id, self.speech_item = self.speech_item, new_item_id()
            self.send(self.wire.input_committed(item_id, self.history.previous_id()))
            self.reply.commit()
