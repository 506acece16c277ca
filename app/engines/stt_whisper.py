"""Speech-to-text with faster-whisper (CTranslate2)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from faster_whisper import WhisperModel

from app.engines.base import STT_SAMPLE_RATE, FloatAudio, Segment, STTTask, Transcript, Word
from app.settings import STTSettings


def bias_text(names: Sequence[str]) -> str | None:
    """Names as whisper's context text: a comma-separated list reads like earlier speech that
    mentioned them, which is what the decoder conditions on."""
    return ", ".join(names) or None


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
        self._bias_with = settings.bias_with
        self._model = WhisperModel(
            str(settings.model_dir),
            device=settings.device,
            compute_type=settings.compute_type,
            cpu_threads=settings.cpu_threads,
            num_workers=settings.concurrency,
        )
        self.multilingual = bool(self._model.model.is_multilingual)

    def segments(
        self,
        audio: FloatAudio,
        *,
        language: str | None = None,
        prompt: str | None = None,
        temperature: float = 0.0,
        word_timestamps: bool = False,
        task: STTTask = "transcribe",
        bias_names: Sequence[str] = (),
    ) -> tuple[Iterator[Segment], str]:
        names = bias_text(bias_names) if self._bias_with != "off" else None
        hotwords = names if self._bias_with == "hotwords" else None
        if self._bias_with == "prompt" and names:
            # the caller's own prompt goes last: whisper weighs the most recent context most
            prompt = f"{names}. {prompt}" if prompt else f"{names}."
        decoded, info = self._model.transcribe(
            audio,
            # translate: the spoken language is detected unless given
            language=language or (self._default_language if task == "transcribe" else None),
            initial_prompt=prompt,
            hotwords=hotwords,
            temperature=temperature,
            beam_size=self._beam_size,
            condition_on_previous_text=False,
            vad_filter=False,
            word_timestamps=word_timestamps,
            task=task,
        )
        segments = (  # lazy: each segment is decoded as it is asked for
            Segment(
                start=s.start,
                end=s.end,
                text=s.text,
                words=[Word(w.start, w.end, w.word) for w in s.words or []],
            )
            for s in decoded
        )
        return segments, info.language

    def transcribe(
        self,
        audio: FloatAudio,
        *,
        language: str | None = None,
        prompt: str | None = None,
        temperature: float = 0.0,
        word_timestamps: bool = False,
        task: STTTask = "transcribe",
        bias_names: Sequence[str] = (),
    ) -> Transcript:
        segments, detected = self.segments(
            audio, language=language, prompt=prompt, temperature=temperature,
            word_timestamps=word_timestamps, task=task, bias_names=bias_names,
        )  # fmt: skip
        parts = list(segments)
        return Transcript(
            text="".join(p.text for p in parts).strip(),
            language=detected,
            duration_s=len(audio) / STT_SAMPLE_RATE,
            segments=parts,
        )
