"""16-bit mono PCM for the realtime clients: read a WAV, trim and add silence, and where
the speech ends (the bench times first audio from the last voiced frame)."""

from __future__ import annotations

import io
import wave

import numpy as np
import numpy.typing as npt

PCM = npt.NDArray[np.int16]


def wav_pcm(data: bytes) -> tuple[PCM, int]:
    with wave.open(io.BytesIO(data)) as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2, "16-bit mono WAV expected"
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").copy(), w.getframerate()


def _frame_rms(pcm: PCM, rate: int, frame_ms: int = 20) -> npt.NDArray[np.float64]:
    n = rate * frame_ms // 1000
    frames = pcm[: len(pcm) // n * n].astype(np.float64).reshape(-1, n)
    rms: npt.NDArray[np.float64] = np.sqrt((frames**2).mean(axis=1))
    return rms


def trim_silence(pcm: PCM, rate: int, level: float = 300.0) -> PCM:
    """Cut leading and trailing near-silence (in 20 ms frames)."""
    voiced = np.nonzero(_frame_rms(pcm, rate) > level)[0]
    if not len(voiced):
        return pcm
    n = rate // 50
    return pcm[voiced[0] * n : (voiced[-1] + 1) * n]


def silence(rate: int, seconds: float) -> PCM:
    return np.zeros(int(rate * seconds), dtype=np.int16)


def last_voiced_s(pcm: PCM, rate: int, level: float = 300.0) -> float:
    """Where the last voiced 20 ms frame ends, in seconds from the start."""
    voiced = np.nonzero(_frame_rms(pcm, rate) > level)[0]
    return float((voiced[-1] + 1) * 0.02) if len(voiced) else 0.0
