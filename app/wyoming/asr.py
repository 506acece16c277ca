"""asr: [`transcribe`] `audio-start` `audio-chunk`+ `audio-stop` → `transcript`.

Through pipeline.transcribe (the STT gate, the stt stage histogram) after the same audio checks
as an upload (app/audio.decode_upload: rate range, length, resampling to 16 kHz), biased towards
stt.bias_names and the names the client sends (`transcript_names`, `transcript_terms`).
Streamed (wyoming.streaming): `transcript-start`, a `transcript-chunk` per whisper segment as
it is decoded, `transcript` (the whole text, for clients that know only that), `transcript-stop`.
"""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from wyoming.asr import Transcribe, Transcript, TranscriptChunk, TranscriptStart, TranscriptStop
from wyoming.audio import AudioChunk

from app.audio import AudioLimits, decode_upload, wav_bytes
from app.engines.base import Transcript as TranscriptResult
from app.errors import APIError
from app.pipeline import transcribe, transcribe_stream
from app.state import ServiceState
from app.wyoming.events import Sender, bad_event, wants_streaming

SAMPLE_WIDTH = 2  # 16-bit PCM in and out
_MAX_CHANNELS = 2


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


def whisper_language(language: Any) -> str | None:
    """Home Assistant sends e.g. "en" or "en-US"; whisper wants "en"."""
    if not isinstance(language, str) or not language:
        return None
    return language.replace("_", "-").split("-")[0].lower() or None


def _names(value: Any, field_name: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad_event(f"transcribe {field_name} must be a list of strings")
    return list(value)


class SpeechIn:
    """One connection's audio in: the transcribe request, the audio stream, the transcript."""

    def __init__(self, state: ServiceState, link: Sender) -> None:
        self.state = state
        self.settings = state.settings.wyoming
        self.link = link
        self.audio: _AudioIn | None = None
        self._reset_request()

    def _reset_request(self) -> None:
        self.language: str | None = None
        self.context: Any = None
        self.names: list[str] = []

    def request(self, transcribe_event: Transcribe) -> None:
        self.language = whisper_language(transcribe_event.language)
        self.context = transcribe_event.context
        # names first (the protocol: they take priority over terms)
        self.names = [
            *_names(transcribe_event.transcript_names, "transcript_names"),
            *_names(transcribe_event.transcript_terms, "transcript_terms"),
        ]

    def _limits(self) -> tuple[float, int]:
        lim = self.state.settings.limits
        seconds = self.settings.max_audio_seconds or lim.max_audio_seconds
        return seconds, self.settings.max_audio_bytes or lim.max_upload_bytes

    def begin(self, rate: Any, width: Any, channels: Any) -> None:
        self.state.require_stt()
        if self.audio is not None:
            raise bad_event("audio-start inside an audio stream (no audio-stop before it)")
        lim = self.state.settings.limits
        for name, value in (("rate", rate), ("width", width), ("channels", channels)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise bad_event(f"audio {name} must be an integer, got {value!r}")
        if not lim.min_sample_rate <= rate <= lim.max_sample_rate:
            raise APIError(
                400,
                f"unsupported sample rate {rate} Hz: expected "
                f"{lim.min_sample_rate}-{lim.max_sample_rate} Hz",
                code="invalid_audio",
            )
        if width != SAMPLE_WIDTH:
            raise APIError(
                400, f"audio width {width}: send 16-bit PCM (width 2)", code="invalid_audio"
            )
        if not 1 <= channels <= _MAX_CHANNELS:
            raise APIError(400, f"audio channels {channels}: send mono", code="invalid_audio")
        self.state.metrics.wyoming_requests.labels("asr").inc()
        self.audio = _AudioIn(rate, width, channels)

    def add(self, chunk: AudioChunk) -> None:
        if self.audio is None:
            # audio-start is optional: the first chunk's format opens the stream
            self.begin(chunk.rate, chunk.width, chunk.channels)
        audio = self.audio
        assert audio is not None
        if (chunk.rate, chunk.width, chunk.channels) != (audio.rate, audio.width, audio.channels):
            raise bad_event(
                f"audio-chunk format {chunk.rate}/{chunk.width}/{chunk.channels} differs from "
                f"the stream's {audio.rate}/{audio.width}/{audio.channels}"
            )
        audio.chunks.append(chunk.audio)
        audio.nbytes += len(chunk.audio)
        max_seconds, max_bytes = self._limits()
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

    async def stop(self) -> None:
        """audio-stop: transcribe what came, streamed where asked."""
        audio, self.audio = self.audio, None
        if audio is None or audio.nbytes == 0:
            raise bad_event("audio-stop without audio", code="no_audio")
        raw = b"".join(audio.chunks)
        frame = audio.width * audio.channels
        pcm = np.frombuffer(raw[: len(raw) // frame * frame], dtype="<i2")
        if audio.channels > 1:
            pcm = pcm.reshape(-1, audio.channels).mean(axis=1).astype(np.int16)
        lim = self.state.settings.limits
        limits = AudioLimits(self._limits()[0], lim.min_sample_rate, lim.max_sample_rate)
        samples = await asyncio.to_thread(decode_upload, wav_bytes(pcm, audio.rate), limits)
        language, names, context = self.language, self.names, self.context
        self._reset_request()
        if not wants_streaming(self.settings.streaming, context):
            result, _ = await transcribe(self.state, samples, language=language, names=names)
            await self.link.send(Transcript(text=result.text, language=result.language).event())
            return
        await self._stream(samples, language, names)

    async def _stream(self, samples: Any, language: str | None, names: list[str]) -> None:
        """transcript-chunk per segment as whisper decodes it (pipeline.transcribe_stream, the
        HTTP API's streaming path too); closing it early (a client gone) frees the gate's
        place when the worker thread ends."""
        start_language = language or self.state.settings.stt.language
        await self.link.send(TranscriptStart(language=start_language).event())
        result = TranscriptResult(text="", language=start_language or "", duration_s=0.0)
        first = True
        stream = transcribe_stream(self.state, samples, language=language, names=names,
                                   into=result)  # fmt: skip
        async with aclosing(stream) as segments:
            async for segment in segments:
                text = segment.text.lstrip() if first else segment.text
                if text:
                    first = False
                    await self.link.send(TranscriptChunk(text=text).event())
        await self.link.send(Transcript(text=result.text, language=result.language).event())
        await self.link.send(TranscriptStop().event())
