"""Speech-to-text with faster-whisper (CTranslate2)."""

from __future__ import annotations

from faster_whisper import WhisperModel

from app.engines.base import STT_SAMPLE_RATE, FloatAudio, Segment, Transcript
from app.settings import STTSettings


class WhisperSTT:
    def __init__(self, settings: STTSettings) -> None:
        if not (settings.model_dir / "model.bin").is_file():
            raise FileNotFoundError(
                f"STT model directory {settings.model_dir} has no model.bin "
                "(faster-whisper wants the CTranslate2 model directory)"
            )
        self.model_name = settings.model_name
        self._beam_size = settings.beam_size
        self._default_language = settings.language
        self._model = WhisperModel(
            str(settings.model_dir),
            device=settings.device,
            compute_type=settings.compute_type,
            cpu_threads=settings.cpu_threads,
            num_workers=settings.concurrency,
        )

    def transcribe(
        self,
        audio: FloatAudio,
        *,
        language: str | None = None,
        prompt: str | None = None,
        temperature: float = 0.0,
    ) -> Transcript:
        segments, info = self._model.transcribe(
            audio,
            language=language or self._default_language,
            initial_prompt=prompt,
            temperature=temperature,
            beam_size=self._beam_size,
            condition_on_previous_text=False,
            vad_filter=False,
        )
        parts = [Segment(start=s.start, end=s.end, text=s.text) for s in segments]
        return Transcript(
            text="".join(p.text for p in parts).strip(),
            language=info.language,
            duration_s=len(audio) / STT_SAMPLE_RATE,
            segments=parts,
        )
