"""One Wyoming connection: events in, dispatched to the programs, events out.

- `describe` → `info` (app/wyoming/info.py); `ping` → `pong`.
- asr (app/wyoming/asr.py), tts (app/wyoming/tts.py), handle (app/wyoming/handle.py), each
  over the service's pipeline stages (gates, limits, metrics shared with the HTTP API).

Unknown event types are dropped, as the protocol asks of servers (clients may send newer
events such as `select-program`). Anything else that goes wrong — broken framing, an invalid
event, a limit, an engine refusal — is answered with an `error` event (`not-handled` for
handle) and the connection is closed; the server goes on serving the others.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress

from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event, async_write_event
from wyoming.handle import NotHandled
from wyoming.info import Describe
from wyoming.ping import Ping, Pong
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop

from app.errors import APIError
from app.state import ServiceState
from app.wyoming.asr import SpeechIn
from app.wyoming.events import parse
from app.wyoming.handle import Agent, Histories
from app.wyoming.info import build_info
from app.wyoming.protocol import ProtocolError, read_event
from app.wyoming.tts import SpeechOut

log = logging.getLogger("voicefleet.wyoming")


class Connection:
    def __init__(
        self,
        state: ServiceState,
        histories: Histories,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.state = state
        self.settings = state.settings.wyoming
        self.histories = histories
        self.reader = reader
        self.writer = writer
        self.program = "protocol"
        self.speech_in = SpeechIn(state, self)
        self.speech_out = SpeechOut(state, self)
        self.agent = Agent(state, histories, self)

    # -- the loop -----------------------------------------------------------------------------

    async def run(self) -> None:
        metrics = self.state.metrics
        try:
            while True:
                self.program = "protocol"
                try:
                    event = await asyncio.wait_for(
                        read_event(self.reader, self.settings.max_event_bytes),
                        self.settings.idle_timeout_s,
                    )
                except TimeoutError:
                    await self._fail(
                        f"no event for {self.settings.idle_timeout_s:.0f} s", "idle_timeout"
                    )
                    return
                if event is None:
                    return
                await self.handle(event)
        except ProtocolError as exc:
            await self._fail(str(exc), exc.code)
        except APIError as exc:
            await self._fail(exc.message, exc.code or f"http_{exc.status}")
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError) as exc:
            # the client went away (or stopped reading): nothing left to tell it
            metrics.wyoming_errors.labels(self.program, "disconnected").inc()
            log.info("wyoming client gone during %s: %s", self.program, type(exc).__name__)
        except Exception:
            log.exception("wyoming %s request failed", self.program)
            await self._fail("internal error (see the service log)", "internal_error")
        finally:
            self.speech_in.audio = None
            self.speech_out.text = None

    async def _fail(self, message: str, code: str) -> None:
        """Count the error, tell the client (best effort) — the caller then closes."""
        self.state.metrics.wyoming_errors.labels(self.program, code).inc()
        log.info("wyoming %s: %s (%s); closing the connection", self.program, message, code)
        event = (
            NotHandled(text=message).event()
            if self.program == "handle"
            else Error(text=message, code=code).event()
        )
        with suppress(Exception):
            await asyncio.wait_for(async_write_event(event, self.writer), 2.0)

    async def send(self, event: Event) -> None:
        # a transport the client closed refuses writes (uvloop: RuntimeError): a disconnect
        if self.writer.is_closing():
            raise ConnectionResetError("the client closed the connection")
        try:
            # a client that stops reading holds an engine gate: bounded like an idle one
            await asyncio.wait_for(
                async_write_event(event, self.writer), self.settings.idle_timeout_s
            )
        except RuntimeError as exc:
            if self.writer.is_closing():
                raise ConnectionResetError("the client closed the connection") from exc
            raise

    async def handle(self, event: Event) -> None:
        t = event.type
        if Describe.is_type(t):
            self.program = "describe"
            self.state.metrics.wyoming_requests.labels("describe").inc()
            await self.send(build_info(self.state).event())
        elif Ping.is_type(t):
            await self.send(Pong(text=parse(Ping, event).text).event())
        elif Transcribe.is_type(t):
            self.program = "asr"
            self.speech_in.request(parse(Transcribe, event))
        elif AudioStart.is_type(t):
            self.program = "asr"
            start = parse(AudioStart, event)
            self.speech_in.begin(start.rate, start.width, start.channels)
        elif AudioChunk.is_type(t):
            self.program = "asr"
            self.speech_in.add(parse(AudioChunk, event))
        elif AudioStop.is_type(t):
            self.program = "asr"
            await self.speech_in.stop()
        elif Synthesize.is_type(t):
            self.program = "tts"
            # inside a text stream it is only the compatibility copy of the streamed text
            if not self.speech_out.streaming_text:
                await self.speech_out.synthesize(parse(Synthesize, event))
        elif SynthesizeStart.is_type(t):
            self.program = "tts"
            await self.speech_out.text_start()
        elif SynthesizeChunk.is_type(t):
            self.program = "tts"
            await self.speech_out.text_chunk(parse(SynthesizeChunk, event).text)
        elif SynthesizeStop.is_type(t):
            self.program = "tts"
            await self.speech_out.text_stop()
        elif Transcript.is_type(t):
            self.program = "handle"
            await self.agent.converse(parse(Transcript, event))
        else:
            self.state.metrics.wyoming_errors.labels("protocol", "ignored_event").inc()
            log.debug("wyoming: ignoring a %r event", t)
