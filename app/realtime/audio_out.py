"""Reply PCM16 at the TTS rate -> PCM16 at the rate the client asked for (OpenAI: 24 kHz).

One libswresample resampler per reply (PyAV), kept across the reply's pieces so the filter
state carries over and piece edges do not click.
"""

from __future__ import annotations

import numpy as np


class PcmResampler:
    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._resampler = None
        if in_rate != out_rate:
            import av

            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=out_rate)

    def convert(self, pcm: bytes) -> bytes:
        if self._resampler is None or not pcm:
            return pcm
        import av

        samples = np.frombuffer(pcm, dtype="<i2").reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = self.in_rate
        return b"".join(
            f.to_ndarray().astype("<i2").tobytes() for f in self._resampler.resample(frame)
        )
