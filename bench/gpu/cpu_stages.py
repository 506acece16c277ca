"""STT and TTS stage costs on this (CPU) machine, for the GPU voice-turn estimate: the GPU box
carries no speech models, so docs/benchmarks.md combines these with its LLM figures, stated
as such. Uses the service's own engines and the installed models (`make setup`).

usage: python3 bench/gpu/cpu_stages.py OUT.json [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from app.engines.stt_whisper import WhisperSTT
from app.engines.tts_piper import PiperTTS
from app.settings import STTSettings, TTSSettings

MODELS = Path(os.environ.get("VOICEFLEET_HOME", Path.home() / ".cache" / "voicefleet")) / "models"
# a spoken question (~2 s) and a first reply sentence (what TTS must finish before audio starts)
QUESTION = "What will the weather be like tomorrow morning?"
FIRST_SENTENCE = "Tomorrow morning will be cool and cloudy, with a little sun after ten."


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--repeats", type=int, default=7)
    a = ap.parse_args()
    current = MODELS / "current"
    stt = WhisperSTT(STTSettings(model_dir=current / "stt", model_name="whisper-tiny.en"))
    voice = sorted((current / "tts").glob("*.onnx"))[0]
    tts = PiperTTS(TTSSettings(voice_path=voice))
    question = np.concatenate(list(tts.synthesize(QUESTION)))
    # the STT engine takes 16 kHz float audio
    audio = (
        np.interp(
            np.arange(0, len(question), tts.sample_rate / 16000), np.arange(len(question)), question
        ).astype(np.float32)
        / 32768.0
    )
    stt_s, tts_s, words = [], [], ""
    for _ in range(a.repeats + 1):  # the first of each warms up and is dropped
        t0 = time.perf_counter()
        words = stt.transcribe(audio).text
        stt_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        list(tts.synthesize(FIRST_SENTENCE))
        tts_s.append(time.perf_counter() - t0)
    result = {
        "machine": f"{platform.node()}: {os.cpu_count()} CPUs ({platform.machine()})",
        "stt_model": "whisper-tiny.en (faster-whisper int8)",
        "tts_voice": voice.name,
        "utterance_s": round(len(question) / tts.sample_rate, 2),
        "transcript": words,
        "stt_ms_p50": round(statistics.median(stt_s[1:]) * 1000, 1),
        "tts_first_sentence_ms_p50": round(statistics.median(tts_s[1:]) * 1000, 1),
        "first_sentence_words": len(FIRST_SENTENCE.split()),
        "repeats": a.repeats,
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
