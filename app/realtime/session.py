"""One realtime connection: receive audio and events, detect turns, run replies, send.

Tasks per session: the receive loop (this coroutine: frames -> VAD -> turn events, control
events), one reply task at a time (app.realtime.respond), and the sender draining the
bounded outbox. Receiving never waits on sending, and sending never waits on the engines,
so a slow reader stalls nobody but itself. Any way out (disconnect, close, limit, error)
cancels the reply, which closes the LLM stream and frees the llama-server slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from fastapi import WebSocket
from pydantic import ValidationError
from starlette.websockets import WebSocketDisconnect, WebSocketState

from app.pipeline import transcribe
from app.realtime.audio_in import FrameDecoder
from app.realtime.history import History
from app.realtime.outbox import Outbox, Overflow
from app.realtime.protocol import (
    CLOSE_IDLE,
    CLOSE_INTERNAL,
    CLOSE_NORMAL,
    CLOSE_PROTOCOL,
    CLOSE_SESSION_TOO_LONG,
    CLOSE_SLOW_READER,
    CLOSE_TOO_BIG,
    MAX_PROTOCOL_ERRORS,
    InputText,
    Ping,
    ResponseCancel,
    SessionUpdate,
    client_event,
    error_event,
)
from app.realtime.respond import EarlyTranscript, Reply, ReplyContext
from app.realtime.turns import TurnDetector, TurnEvent
from app.realtime.vad import StreamingVAD
from app.state import ServiceState

log = logging.getLogger("voicefleet.realtime")


class _Close(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Session:
    def __init__(
        self, ws: WebSocket, state: ServiceState, session_id: str, slot: int | None
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
        self.turns = TurnDetector(self.cfg)
        self.max_tokens = self.cfg.max_tokens or llm.default_max_tokens
        self.max_tokens = min(self.max_tokens, llm.max_tokens_cap)
        self.temperature = self.cfg.temperature
        self.reply: Reply | None = None
        # the utterance so far, transcribed at a pause (realtime.early_stt_silence_ms)
        self.early: EarlyTranscript | None = None
        self.turn = 0
        self.restarts = 0
        self.protocol_errors = 0
        self.close_reason = "client_closed"
        self._failure: _Close | None = None
        self._failed = asyncio.Event()

    # --- lifecycle ----------------------------------------------------------------------
    async def run(self) -> str:
        """Serve until the client leaves or a limit is hit; returns the close reason."""
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
            if self.reply is not None:
                self.reply.cancel("disconnected")
            if self.early is not None:
                self.early.task.cancel()
            if self._failure is not None and self._failure.code != CLOSE_SLOW_READER:
                # let the error event out before the close frame
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._flushed(), 2.0)
            sender.cancel()
            await asyncio.gather(receiver, failed, sender, return_exceptions=True)
            if self.reply is not None:
                await asyncio.gather(self.reply.task, return_exceptions=True)
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
                self.outbox.put(error_event(close.reason, message or close.reason, fatal=True))
        self.outbox.closed = True
        self._failed.set()

    def _overflow(self, exc: Overflow) -> None:
        self._fail(_Close(CLOSE_SLOW_READER, "slow_reader"), notify=False)

    def send(self, event: dict[str, Any]) -> None:
        try:
            self.outbox.put(event)
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
                self._on_audio(data)
            elif text is not None:
                self._on_text(text)

    def _protocol_error(self, code: str, message: str) -> None:
        self.protocol_errors += 1
        if self.protocol_errors >= MAX_PROTOCOL_ERRORS:
            raise _Close(CLOSE_PROTOCOL, "protocol_error")
        self.send(error_event(code, message))

    def _on_audio(self, data: bytes) -> None:
        if len(data) % 2:
            self._protocol_error("invalid_audio", "binary messages are 16-bit PCM: even length")
            return
        audio = self.decoder.decode(data)
        if not len(audio):
            return
        probs, windows = self.vad.process(audio)
        for event in self.turns.feed(probs, windows):
            self._on_turn_event(event)

    def _on_text(self, text: str) -> None:
        try:
            event = client_event.validate_python(json.loads(text))
        except (ValueError, ValidationError) as exc:
            detail = str(exc).splitlines()[0][:200]
            self._protocol_error("invalid_event", f"not a valid client event: {detail}")
            return
        if isinstance(event, Ping):
            self.send({"type": "pong"})
        elif isinstance(event, ResponseCancel):
            if self.reply is not None:
                self.reply.cancel("client")
        elif isinstance(event, InputText):
            self._on_input_text(event.text)
        elif isinstance(event, SessionUpdate):
            self._on_update(event)

    def _on_update(self, event: SessionUpdate) -> None:
        cap = self.state.settings.llm.max_tokens_cap
        if event.max_tokens is not None and event.max_tokens > cap:
            self._protocol_error("max_tokens_too_large", f"max_tokens is capped at {cap}")
            return
        if event.sample_rate is not None and event.sample_rate != self.decoder.sample_rate:
            self.decoder = FrameDecoder(event.sample_rate)
        self.max_tokens = event.max_tokens or self.max_tokens
        if event.temperature is not None:
            self.temperature = event.temperature
        self.send({"type": "session.updated", "input_sample_rate": self.decoder.sample_rate,
                   "max_tokens": self.max_tokens, "temperature": self.temperature})  # fmt: skip

    def _on_input_text(self, text: str) -> None:
        limit = self.state.settings.limits.max_input_chars
        if len(text) > limit or not self.history.fits_alone(text, self.max_tokens):
            self._protocol_error(
                "input_too_long", f"the text does not fit one turn ({len(text)} characters)"
            )
            return
        if self.reply is not None:
            self.reply.cancel("superseded")
        self.turn += 1
        now = time.perf_counter()
        self.reply = self._new_reply(text=text, committed=True, t_vad_end=now, t_last_voiced=now)

    # --- turns --------------------------------------------------------------------------
    def _new_reply(self, **kw: Any) -> Reply:
        ctx = ReplyContext(
            self.state, self.outbox, self.history, self.slot, self.max_tokens,
            self.temperature, self._overflow,
        )  # fmt: skip
        return Reply(ctx, self.turn, **kw)

    def _on_pause(self, event: TurnEvent) -> None:
        """Transcribe what was said so far, unless a pass is still running (its thread would
        go on even if cancelled): one early pass per session at a time bounds the extra CPU."""
        if event.audio is None or (self.early is not None and not self.early.task.done()):
            return
        self.early = EarlyTranscript(
            asyncio.create_task(transcribe(self.state, event.audio)), event.last_voiced_ms
        )

    def _early_for(self, event: TurnEvent) -> EarlyTranscript | None:
        """The early transcript when it covers all the speech up to this stop."""
        early, self.early = self.early, None
        if early is not None and early.last_voiced_ms == event.last_voiced_ms:
            return early
        return None

    def _on_turn_event(self, event: TurnEvent) -> None:
        now = time.perf_counter()
        if event.kind == "pause":
            self._on_pause(event)
        elif event.kind == "speech_started":
            if self.reply is not None and self.reply.playing(now):
                self.reply.cancel("barge_in")
            self.turn += 1
            self.restarts = 0
            self.send({"type": "speech_started", "audio_ms": event.audio_ms})
        elif event.kind == "speech_resumed":
            # a pause inside one request: drop the speculative reply, keep listening
            if self.reply is not None and not self.reply.committed:
                self.reply.cancel("merged")
                self.restarts += 1
            self.send({"type": "speech_started", "audio_ms": event.audio_ms, "resumed": True})
        elif event.kind == "speech_stopped":
            self.send({"type": "speech_stopped", "audio_ms": event.audio_ms})
            silence_s = (event.audio_ms - event.last_voiced_ms) / 1000
            self.reply = self._new_reply(
                audio=event.audio, committed=False, t_vad_end=now,
                t_last_voiced=now - silence_s, restarts=self.restarts,
                early=self._early_for(event),
            )  # fmt: skip
        elif event.kind == "commit" and self.reply is not None:
            self.reply.commit()
