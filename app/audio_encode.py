"""Speech out in OpenAI's response formats, encoded as it is synthesised.

mp3, opus (Ogg), aac (ADTS), flac go through PyAV (ffmpeg's encoders), fed sentence by
sentence, so the first bytes leave after the first sentence; wav is a streaming header (sizes
0xFFFFFFFF: "until the end", as ffmpeg writes to a pipe) and raw PCM; pcm is raw 16-bit PCM.
"""

from __future__ import annotations

import struct
from typing import Any, Literal

from app.engines.base import PCM16

SpeechFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]
SPEECH_FORMATS: tuple[SpeechFormat, ...] = ("mp3", "opus", "aac", "flac", "wav", "pcm")

MEDIA_TYPES: dict[SpeechFormat, str] = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/L16",
}

# format -> (container, encoder); opus runs at 24 kHz (it takes 8/12/16/24/48 kHz, and piper
# voices speak at 16 or 22.05 kHz)
_PYAV: dict[str, tuple[str, str]] = {
    "mp3": ("mp3", "libmp3lame"),
    "opus": ("ogg", "libopus"),
    "aac": ("adts", "aac"),
    "flac": ("flac", "flac"),
}
_OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
# Ogg pages are cut every 100 ms (ffmpeg's default, 1 s, would hold back a short sentence)
_OGG_PAGE_US = "100000"

STREAMING_SIZE = 0xFFFFFFFF


def streaming_wav_header(sample_rate: int) -> bytes:
    """A 16-bit mono WAV header whose RIFF and data sizes mean "until the end"."""
    return b"RIFF" + struct.pack(
        "<I4s4sIHHIIHH4sI",
        STREAMING_SIZE, b"WAVE", b"fmt ", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16,
        b"data", STREAMING_SIZE,
    )  # fmt: skip


class _Sink:
    """The file PyAV writes the container to; what it wrote is taken after each chunk."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


class SpeechEncoder:
    """Encode mono int16 PCM chunks into one stream of `fmt`: feed() per chunk, then close()."""

    def __init__(self, fmt: SpeechFormat, sample_rate: int) -> None:
        self.fmt = fmt
        self.sample_rate = sample_rate
        self._header = streaming_wav_header(sample_rate) if fmt == "wav" else b""
        self._container = None
        if fmt in _PYAV:
            import av  # heavy import, only for the encoded formats

            container_format, codec = _PYAV[fmt]
            options = {"page_duration": _OGG_PAGE_US} if container_format == "ogg" else {}
            self._sink = _Sink()
            self._container = av.open(
                self._sink, mode="w", format=container_format, options=options
            )
            rate = sample_rate
            if fmt == "opus":
                rate = next((r for r in _OPUS_RATES if r >= sample_rate), 48000)
            self._stream: Any = self._container.add_stream(codec, rate=rate, layout="mono")

    def feed(self, pcm: PCM16) -> bytes:
        data = pcm.astype("<i2", copy=False)
        if self._container is None:
            out = self._header + data.tobytes()
            self._header = b""
            return out
        import av

        frame = av.AudioFrame.from_ndarray(data.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.sample_rate
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        return self._sink.take()

    def close(self) -> bytes:
        """The encoder's held-back tail and the container's trailer."""
        if self._container is None:
            out, self._header = self._header, b""  # an empty input still gets its header
            return out
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        return self._sink.take()
