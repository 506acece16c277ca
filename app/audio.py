"""Audio in and out: strict WAV parsing, other containers via PyAV, WAV/PCM encoding.

Uploads are checked before any model sees them, so bad audio is a clear 4xx:
empty, truncated, not audio, a sample rate outside [min, max], longer than the limit.
Any channel count is downmixed and any rate resampled to what the STT engine takes.
"""

from __future__ import annotations

import io
import struct
import wave
from dataclasses import dataclass

import numpy as np

from app.engines.base import PCM16, STT_SAMPLE_RATE, FloatAudio
from app.errors import APIError


@dataclass
class AudioLimits:
    max_seconds: float
    min_sample_rate: int
    max_sample_rate: int


def _bad(message: str, code: str = "invalid_audio") -> APIError:
    return APIError(400, message, code=code, param="file")


def _parse_wav(data: bytes) -> tuple[np.ndarray | None, int, int]:
    """Return (interleaved samples as float32 in [-1, 1], sample rate, channels) from a
    RIFF/WAVE file; samples None for an encoding left to PyAV (24-bit, 8-bit, extensible)."""
    if len(data) < 44:
        raise _bad("truncated WAV: shorter than a WAV header")
    fmt_tag = None
    pos = 12
    channels = rate = bits = 0
    body: bytes | None = None
    while pos + 8 <= len(data):
        chunk_id, size = struct.unpack_from("<4sI", data, pos)
        start = pos + 8
        if chunk_id == b"fmt ":
            if size < 16 or start + 16 > len(data):
                raise _bad("truncated WAV: incomplete fmt chunk")
            fmt_tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", data, start)
        elif chunk_id == b"data":
            if fmt_tag is None:
                raise _bad("malformed WAV: data chunk before fmt chunk")
            if size == 0xFFFFFFFF:  # a streamed WAV (ours, ffmpeg's): data to the end
                size = len(data) - start
            if start + size > len(data):
                raise _bad(
                    f"truncated WAV: data chunk declares {size} bytes, file has {len(data) - start}"
                )
            body = data[start : start + size]
            break
        pos = start + size + (size & 1)
    if fmt_tag is None or body is None:
        raise _bad("malformed WAV: no fmt/data chunk")
    if channels < 1:
        raise _bad("malformed WAV: zero channels")
    if fmt_tag == 1 and bits == 16:
        samples = np.frombuffer(body[: len(body) // 2 * 2], dtype="<i2").astype(np.float32)
        samples /= 32768.0
    elif fmt_tag == 3 and bits == 32:
        samples = np.frombuffer(body[: len(body) // 4 * 4], dtype="<f4").astype(np.float32)
    else:
        return None, rate, channels
    return samples, rate, channels


def _resample(samples: np.ndarray, rate: int) -> np.ndarray:
    """Band-limited resampling to 16 kHz with PyAV's (libswresample) resampler."""
    import av

    frame = av.AudioFrame.from_ndarray(
        samples.reshape(1, -1).astype(np.float32), format="flt", layout="mono"
    )
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="flt", layout="mono", rate=STT_SAMPLE_RATE)
    out = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    out += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)


def _decode_other(data: bytes) -> np.ndarray:
    """Any container ffmpeg knows (ogg, mp3, webm, flac, m4a...), decoded, downmixed and
    resampled to 16 kHz mono by PyAV."""
    from faster_whisper.audio import decode_audio

    try:
        return np.asarray(decode_audio(io.BytesIO(data), sampling_rate=STT_SAMPLE_RATE))
    except Exception as exc:  # PyAV raises many types for non-audio bytes
        raise _bad(f"not a decodable audio file ({type(exc).__name__})") from exc


def decode_upload(data: bytes, limits: AudioLimits) -> FloatAudio:
    """Validate and convert an upload to 16 kHz mono float32 for the STT engine."""
    if not data:
        raise _bad("empty audio file", code="empty_file")
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        samples, rate, channels = _parse_wav(data)
        if not limits.min_sample_rate <= rate <= limits.max_sample_rate:
            raise _bad(
                f"unsupported sample rate {rate} Hz: expected "
                f"{limits.min_sample_rate}-{limits.max_sample_rate} Hz"
            )
        if samples is None:
            audio = _decode_other(data)
        else:
            # downmix: the mean of the channels (a stereo recording of one voice stays whole)
            frames = samples[: len(samples) // channels * channels].reshape(-1, channels)
            mono = frames.mean(axis=1, dtype=np.float32) if channels > 1 else frames[:, 0]
            audio = mono if rate == STT_SAMPLE_RATE else _resample(mono, rate)
    elif data[:4] == b"RIFF":
        raise _bad("truncated or malformed WAV header")
    else:
        audio = _decode_other(data)
    if len(audio) / STT_SAMPLE_RATE > limits.max_seconds:
        raise _audio_too_long(len(audio) / STT_SAMPLE_RATE, limits)
    if len(audio) < STT_SAMPLE_RATE // 10:
        raise _bad("audio is shorter than 0.1 s", code="audio_too_short")
    return audio.astype(np.float32, copy=False)


def _audio_too_long(seconds: float, limits: AudioLimits) -> APIError:
    return APIError(
        413,
        f"audio is {seconds:.1f} s long; the limit is {limits.max_seconds:.0f} s",
        code="audio_too_long",
        param="file",
    )


def wav_bytes(pcm: PCM16, sample_rate: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.astype("<i2").tobytes())
    return buf.getvalue()
