"""Streaming Silero VAD, with the ONNX model faster-whisper ships.

faster-whisper runs Silero over a whole file (`get_speech_timestamps`); a live stream needs
the same model fed window by window: 512 samples at 16 kHz (32 ms) plus the 64 samples
before it as context, with the LSTM state (h, c) carried from call to call. The model treats
its batch axis as a sequence, so several windows go in one call with identical results.
The ONNX session is shared by all sessions (onnxruntime's run() is thread-safe); the state
here is per session.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from app.engines.base import STT_SAMPLE_RATE, FloatAudio

WINDOW = 512
CONTEXT = 64
WINDOW_MS = WINDOW * 1000 // STT_SAMPLE_RATE  # 32


def _vad_model() -> Any:
    # imported on use: a unit with stt disabled (no realtime) may lack faster-whisper
    from faster_whisper.vad import get_vad_model

    return get_vad_model()


def load_model() -> None:
    """Load the shared ONNX session now (blocking: call off the event loop)."""
    _vad_model()


class StreamingVAD:
    def __init__(self) -> None:
        self._session = _vad_model().session
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)

    def process(self, audio: FloatAudio) -> tuple[npt.NDArray[np.float32], FloatAudio]:
        """Feed 16 kHz audio; returns the speech probability of each completed window and
        the audio of those windows (what is left waits for the next call)."""
        buf = np.concatenate([self._pending, audio]) if len(self._pending) else audio
        n = len(buf) // WINDOW
        if n == 0:
            self._pending = buf
            return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.float32)
        windows = buf[: n * WINDOW].reshape(n, WINDOW)
        self._pending = buf[n * WINDOW :].copy()
        context = np.concatenate([self._context[None, :], windows[:-1, -CONTEXT:]], axis=0)
        batch = np.concatenate([context, windows], axis=1).astype(np.float32, copy=False)
        probs, self._h, self._c = self._session.run(
            None, {"input": batch, "h": self._h, "c": self._c}
        )
        self._context = windows[-1, -CONTEXT:].copy()
        return np.asarray(probs, dtype=np.float32).reshape(-1), windows.reshape(-1)
