"""Text-to-speech with piper (ONNX voices). piper-tts is GPL-3.0-or-later."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from piper import PiperVoice
from piper.config import SynthesisConfig

from app.engines.base import PCM16
from app.settings import TTSSettings


class PiperTTS:
    def __init__(self, settings: TTSSettings) -> None:
        config_path = settings.voice_path.with_name(settings.voice_path.name + ".json")
        for path in (settings.voice_path, config_path):
            if not path.is_file():
                raise FileNotFoundError(f"piper voice file {path} not found")
        self.model_name = settings.model_name
        self.voice_name = settings.voice_name
        self._speaker_id = settings.speaker_id
        self._voice = PiperVoice.load(settings.voice_path, config_path=config_path)
        self.sample_rate = int(self._voice.config.sample_rate)

    def synthesize(self, text: str, *, speed: float = 1.0) -> Iterator[PCM16]:
        config = SynthesisConfig(speaker_id=self._speaker_id, length_scale=1.0 / speed)
        for chunk in self._voice.synthesize(text, syn_config=config):
            yield np.asarray(chunk.audio_int16_array, dtype=np.int16).reshape(-1)
