"""tts: `synthesize` → `audio-start` `audio-chunk`+ `audio-stop`, piece by piece as piper speaks
each sentence (pipeline.synthesize_stream: the TTS gate, tts stage histograms); streamed text:
`synthesize-start` `synthesize-chunk`+ [`synthesize`] `synthesize-stop` → audio per sentence as
the text arrives, then `synthesize-stopped`."""

from __future__ import annotations

from contextlib import aclosing
from typing import Any

from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.tts import Synthesize, SynthesizeStart, SynthesizeStopped

from app.errors import APIError
from app.pipeline import synthesize_stream
from app.realtime.sentences import SentenceChunker
from app.state import ServiceState
from app.wyoming.asr import SAMPLE_WIDTH
from app.wyoming.events import Sender, bad_event

# a sentence longer than this is cut at a clause break (piper speaks it in parts)
_MAX_SENTENCE_CHARS = 400


class _TextIn:
    def __init__(self, chunker: SentenceChunker) -> None:
        self.chunker = chunker
        self.chars = 0


class SpeechOut:
    """One connection's speech out: a whole text, or a text stream spoken as it arrives."""

    def __init__(self, state: ServiceState, link: Sender) -> None:
        self.state = state
        self.settings = state.settings.wyoming
        self.link = link
        self.text: _TextIn | None = None

    @property
    def streaming_text(self) -> bool:
        return self.text is not None

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

    async def synthesize(self, synthesize: Synthesize) -> None:
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
        await self.link.send(AudioStart(rate=rate, width=SAMPLE_WIDTH, channels=1).event())
        async with aclosing(synthesize_stream(self.state, sentences)) as pieces:
            async for pcm in pieces:
                raw = pcm.astype("<i2").tobytes()
                step = per_chunk * SAMPLE_WIDTH
                for offset in range(0, len(raw), step):
                    part = raw[offset : offset + step]
                    chunk = AudioChunk(rate=rate, width=SAMPLE_WIDTH, channels=1, audio=part)
                    await self.link.send(chunk.event())
        await self.link.send(AudioStop().event())

    async def text_start(self) -> None:
        self._check_voice(SynthesizeStart())
        if self.text is not None:
            raise bad_event("synthesize-start inside a text stream")
        rt = self.state.settings.realtime
        self.state.metrics.wyoming_requests.labels("tts").inc()
        self.text = _TextIn(SentenceChunker(rt.chunk_max_chars, rt.first_chunk_min_chars))

    async def text_chunk(self, text: Any) -> None:
        if self.text is None:
            raise bad_event("synthesize-chunk outside a text stream (no synthesize-start)")
        if not isinstance(text, str):
            raise bad_event("synthesize-chunk text must be a string")
        self.text.chars += len(text)
        self._check_text(self.text.chars)
        for piece in self.text.chunker.push(text):
            await self._speak([piece])

    async def text_stop(self) -> None:
        if self.text is None:
            raise bad_event("synthesize-stop outside a text stream (no synthesize-start)")
        stream, self.text = self.text, None
        for piece in stream.chunker.flush():
            await self._speak([piece])
        await self.link.send(SynthesizeStopped().event())
