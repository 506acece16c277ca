"""One Wyoming connection: events in, the service's pipeline stages, events out.

- `describe` → `info` (app/wyoming/info.py); `ping` → `pong`.
- asr: [`transcribe`] `audio-start` `audio-chunk`+ `audio-stop` → `transcript`, through
  pipeline.transcribe (the STT gate, the stt stage histogram) after the same audio checks as an
  upload (app/audio.decode_upload: rate range, length, resampling to 16 kHz).
- tts: `synthesize` → `audio-start` `audio-chunk`+ `audio-stop`, piece by piece as piper
  speaks each sentence (pipeline.synthesize_stream: the TTS gate, tts stage histograms);
  streamed text: `synthesize-start` `synthesize-chunk`+ [`synthesize`] `synthesize-stop` →
  audio per sentence as the text arrives, then `synthesize-stopped`.
- handle: `transcript` → `handled` (the LLM through pipeline.complete, the configured system
  prompt, max_tokens within llm.max_tokens_cap; the history of Home Assistant's
  conversation_id is kept).

Unknown event types are dropped, as the protocol asks of servers (clients may send newer
events such as `select-program`). Anything else that goes wrong — broken framing, an invalid
event, a limit, an engine refusal — is answered with an `error` event (`not-handled` for
handle) and the connection is closed; the server goes on serving the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from contextlib import aclosing, suppress
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event, Eventable, async_write_event
from wyoming.handle import Handled, NotHandled
from wyoming.info import Describe
from wyoming.ping import Ping, Pong
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
)

from app.audio import AudioLimits, decode_upload, wav_bytes
from app.engines.base import ChatParams
from app.errors import APIError
from app.pipeline import complete, resolve_max_tokens, synthesize_stream, transcribe
from app.realtime.history import History
from app.realtime.sentences import SentenceChunker
from app.state import ServiceState
from app.wyoming.info import build_info
from app.wyoming.protocol import ProtocolError, read_event

log = logging.getLogger("voicefleet.wyoming")

E = TypeVar("E", bound=Eventable)

_SAMPLE_WIDTH = 2  # 16-bit PCM in and out
_MAX_CHANNELS = 2
# a sentence longer than this is cut at a clause break (piper speaks it in parts)
_MAX_SENTENCE_CHARS = 400


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


@dataclass
class _AudioIn:
    rate: int
    width: int
    channels: int
    chunks: list[bytes] = field(default_factory=list)
    nbytes: int = 0

    @property
    def seconds(self) -> float:
        return self.nbytes / (self.rate * self.width * self.channels)


@dataclass
class _TextIn:
    chunker: SentenceChunker
    chars: int = 0


def _bad_event(message: str, code: str = "bad_event") -> APIError:
    return APIError(400, message, code=code)


def _parse(cls: type[E], event: Event) -> E:
    try:
        parsed = cls.from_event(event)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _bad_event(f"invalid {event.type!r} event: {type(exc).__name__} {exc}") from None
    assert isinstance(parsed, cls)
    return parsed


def _whisper_language(language: Any) -> str | None:
    """Home Assistant sends e.g. "en" or "en-US"; whisper wants "en"."""
    if not isinstance(language, str) or not language:
        return None
    return language.replace("_", "-").split("-")[0].lower() or None


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
        self.language: str | None = None
        self.audio: _AudioIn | None = None
        self.text: _TextIn | None = None

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
            self.audio = None
            self.text = None

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
            await self.send(Pong(text=_parse(Ping, event).text).event())
        elif Transcribe.is_type(t):
            self.program = "asr"
            self.language = _whisper_language(_parse(Transcribe, event).language)
        elif AudioStart.is_type(t):
            self.program = "asr"
            start = _parse(AudioStart, event)
            self._begin_audio(start.rate, start.width, start.channels)
        elif AudioChunk.is_type(t):
            self.program = "asr"
            self._add_audio(_parse(AudioChunk, event))
        elif AudioStop.is_type(t):
            self.program = "asr"
            await self._transcribe()
        elif Synthesize.is_type(t):
            self.program = "tts"
            # inside a text stream it is only the compatibility copy of the streamed text
            if self.text is None:
                await self._synthesize(_parse(Synthesize, event))
        elif SynthesizeStart.is_type(t):
            self.program = "tts"
            await self._text_start()
        elif SynthesizeChunk.is_type(t):
            self.program = "tts"
            await self._text_chunk(_parse(SynthesizeChunk, event).text)
        elif SynthesizeStop.is_type(t):
            self.program = "tts"
            await self._text_stop()
        elif Transcript.is_type(t):
            self.program = "handle"
            await self._converse(_parse(Transcript, event))
        else:
            self.state.metrics.wyoming_errors.labels("protocol", "ignored_event").inc()
            log.debug("wyoming: ignoring a %r event", t)

    # -- asr ----------------------------------------------------------------------------------

    def _audio_limits(self) -> tuple[float, int]:
        lim = self.state.settings.limits
        seconds = self.settings.max_audio_seconds or lim.max_audio_seconds
        return seconds, self.settings.max_audio_bytes or lim.max_upload_bytes

    def _begin_audio(self, rate: Any, width: Any, channels: Any) -> None:
        self.state.require_stt()
        if self.audio is not None:
            raise _bad_event("audio-start inside an audio stream (no audio-stop before it)")
        lim = self.state.settings.limits
        for name, value in (("rate", rate), ("width", width), ("channels", channels)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise _bad_event(f"audio {name} must be an integer, got {value!r}")
        if not lim.min_sample_rate <= rate <= lim.max_sample_rate:
            raise APIError(
                400,
                f"unsupported sample rate {rate} Hz: expected "
                f"{lim.min_sample_rate}-{lim.max_sample_rate} Hz",
                code="invalid_audio",
            )
        if width != _SAMPLE_WIDTH:
            raise APIError(
                400, f"audio width {width}: send 16-bit PCM (width 2)", code="invalid_audio"
            )
        if not 1 <= channels <= _MAX_CHANNELS:
            raise APIError(400, f"audio channels {channels}: send mono", code="invalid_audio")
        self.state.metrics.wyoming_requests.labels("asr").inc()
        self.audio = _AudioIn(rate, width, channels)

    def _add_audio(self, chunk: AudioChunk) -> None:
        if self.audio is None:
            # audio-start is optional: the first chunk's format opens the stream
            self._begin_audio(chunk.rate, chunk.width, chunk.channels)
        audio = self.audio
        assert audio is not None
        if (chunk.rate, chunk.width, chunk.channels) != (audio.rate, audio.width, audio.channels):
            raise _bad_event(
                f"audio-chunk format {chunk.rate}/{chunk.width}/{chunk.channels} differs from "
                f"the stream's {audio.rate}/{audio.width}/{audio.channels}"
            )
        audio.chunks.append(chunk.audio)
        audio.nbytes += len(chunk.audio)
        max_seconds, max_bytes = self._audio_limits()
        if audio.nbytes > max_bytes:
            raise APIError(
                413, f"audio stream is over {max_bytes} bytes, the limit", code="audio_too_large"
            )
        if audio.seconds > max_seconds:
            raise APIError(
                413,
                f"audio stream is {audio.seconds:.1f} s long; the limit is {max_seconds:.0f} s",
                code="audio_too_long",
            )

    async def _transcribe(self) -> None:
        audio, self.audio = self.audio, None
        if audio is None or audio.nbytes == 0:
            raise _bad_event("audio-stop without audio", code="no_audio")
        raw = b"".join(audio.chunks)
        frame = audio.width * audio.channels
        pcm = np.frombuffer(raw[: len(raw) // frame * frame], dtype="<i2")
        if audio.channels > 1:
            pcm = pcm.reshape(-1, audio.channels).mean(axis=1).astype(np.int16)
        lim = self.state.settings.limits
        limits = AudioLimits(self._audio_limits()[0], lim.min_sample_rate, lim.max_sample_rate)
        samples = await asyncio.to_thread(decode_upload, wav_bytes(pcm, audio.rate), limits)
        result, _ = await transcribe(self.state, samples, language=self.language)
        await self.send(Transcript(text=result.text, language=result.language).event())
        self.language = None

    # -- tts ----------------------------------------------------------------------------------

    def _check_voice(self, synthesize: Synthesize | SynthesizeStart) -> None:
        tts = self.state.require_tts()
        voice = synthesize.voice
        if voice is not None and voice.name not in (None, tts.voice_name):
            raise APIError(
                400,
                f"unknown voice {voice.name!r}; this unit speaks {tts.voice_name!r}",
                code="unknown_voice",
            )

    def _check_text(self, chars: int) -> None:
        limit = self.state.settings.limits.max_speech_chars
        if chars > limit:
            raise APIError(
                400, f"text is {chars} characters; the limit is {limit}", code="input_too_long"
            )

    async def _synthesize(self, synthesize: Synthesize) -> None:
        self._check_voice(synthesize)
        text = " ".join(str(synthesize.text).split())
        self._check_text(len(text))
        if not text:
            raise APIError(400, "text is blank", code="empty_input")
        self.state.metrics.wyoming_requests.labels("tts").inc()
        # sentence by sentence (as wyoming-piper does): the first audio waits for the first
        # sentence's phonemes and inference only, not the whole text's
        chunker = SentenceChunker(max_chars=_MAX_SENTENCE_CHARS, first_min_chars=len(text) + 1)
        await self._speak([*chunker.push(text), *chunker.flush()])

    async def _speak(self, sentences: list[str]) -> None:
        """audio-start, an audio-chunk per samples_per_chunk as each sentence is spoken,
        audio-stop."""
        tts = self.state.require_tts()
        rate, per_chunk = tts.sample_rate, self.settings.samples_per_chunk
        await self.send(AudioStart(rate=rate, width=_SAMPLE_WIDTH, channels=1).event())
        async with aclosing(synthesize_stream(self.state, sentences)) as pieces:
            async for pcm in pieces:
                raw = pcm.astype("<i2").tobytes()
                step = per_chunk * _SAMPLE_WIDTH
                for offset in range(0, len(raw), step):
                    part = raw[offset : offset + step]
                    chunk = AudioChunk(rate=rate, width=_SAMPLE_WIDTH, channels=1, audio=part)
                    await self.send(chunk.event())
        await self.send(AudioStop().event())

    async def _text_start(self) -> None:
        self._check_voice(SynthesizeStart())
        if self.text is not None:
            raise _bad_event("synthesize-start inside a text stream")
        rt = self.state.settings.realtime
        self.state.metrics.wyoming_requests.labels("tts").inc()
        self.text = _TextIn(SentenceChunker(rt.chunk_max_chars, rt.first_chunk_min_chars))

    async def _text_chunk(self, text: Any) -> None:
        if self.text is None:
            raise _bad_event("synthesize-chunk outside a text stream (no synthesize-start)")
        if not isinstance(text, str):
            raise _bad_event("synthesize-chunk text must be a string")
        self.text.chars += len(text)
        self._check_text(self.text.chars)
        for piece in self.text.chunker.push(text):
            await self._speak([piece])

    async def _text_stop(self) -> None:
        if self.text is None:
            raise _bad_event("synthesize-stop outside a text stream (no synthesize-start)")
        stream, self.text = self.text, None
        for piece in stream.chunker.flush():
            await self._speak([piece])
        await self.send(SynthesizeStopped().event())

    # -- handle -------------------------------------------------------------------------------

    async def _converse(self, transcript: Transcript) -> None:
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
        conversation_id = context.get("conversation_id")
        if not isinstance(conversation_id, str) or not conversation_id:
            conversation_id = None
        history = self.histories.get(conversation_id)
        max_tokens = resolve_max_tokens(self.state, s.wyoming.max_tokens)
        messages = history.messages(text, max_tokens)
        params = ChatParams(max_tokens=max_tokens, temperature=s.wyoming.temperature)
        reply, timings = await complete(self.state, messages, params)
        reply = reply.strip()
        history.calibrate(messages, timings.prompt_tokens)
        history.add(text, reply)
        await self.send(Handled(text=reply, context=context or None).event())
