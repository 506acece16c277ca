"""Client PCM16 frames -> 16 kHz float32 for the VAD and STT, resampled when needed.

One libswresample resampler per session (PyAV), kept across frames so the filter state
carries over and frame edges do not click.
"""

from __future__ import annotations

import numpy as np

from app.engines.base import STT_SAMPLE_RATE, FloatAudio


class FrameDecoder:
    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self._resampler = None
        if sample_rate != STT_SAMPLE_RATE:
            import av

            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=STT_SAMPLE_RATE)

    def decode(self, data: bytes) -> FloatAudio:
        """`data` must hold whole samples (an even number of bytes)."""
        pcm = np.frombuffer(data, dtype="<i2")
        if self._resampler is None:
            return pcm.astype(np.float32) / 32768.0
        import av

        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.sample_rate
        out = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)]
        if not out:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(out).astype(np.float32, copy=False)
