"""`voicefleet bench-bias`: does biasing whisper towards the home's device names make it hear
them? Word recall on spoken device names, with and without biasing, on the same utterances.

The utterances are commands a Home Assistant user says, each naming a device whose brand or
name a small whisper tends to mis-hear; the unit's own piper voice speaks them (resampled to
16 kHz by the service's upload decoder), and the unit's whisper transcribes each one with
every `stt.bias_with` mode, all biased with the whole list of names (what a home exposes, as
stt.bias_names or a client's transcript_names would). Each command is spoken once and every
mode hears the same audio; piper adds noise to its voice, so a new run's audio (and figures)
differ a little, while whisper decodes greedily (temperature 0).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from app import __version__
from app.audio import AudioLimits, decode_upload, wav_bytes
from app.bench.quality import word_recall
from app.engines.base import FloatAudio, TTSEngine
from app.settings import Settings, load_settings

# (what is said, the device name in it)
COMMANDS: tuple[tuple[str, str], ...] = (
    ("Turn on the kitchen pendant lights.", "kitchen pendant lights"),
    ("Set the Ecobee thermostat to twenty degrees.", "Ecobee thermostat"),
    ("Start the Roborock vacuum in the hallway.", "Roborock vacuum"),
    ("Dim the Nanoleaf panels in the study.", "Nanoleaf panels"),
    ("Turn off the Govee light strip.", "Govee light strip"),
    ("Open the Somfy blinds in the bedroom.", "Somfy blinds"),
    ("Play some jazz on the Sonos Arc.", "Sonos Arc"),
    ("Is the Aqara door sensor open?", "Aqara door sensor"),
    ("Switch on the Shelly plug in the garage.", "Shelly plug"),
    ("Lock the Nuki smart lock.", "Nuki smart lock"),
    ("Turn on the Hue Bloom lamp.", "Hue Bloom lamp"),
    ("Close the Velux skylight.", "Velux skylight"),
)
MODES = ("off", "hotwords", "prompt")


def name_recall(name: str, heard: str) -> float:
    return word_recall(name, heard)


def _speak(settings: Settings, tts: TTSEngine, texts: Sequence[str]) -> list[FloatAudio]:
    lim = settings.limits
    limits = AudioLimits(lim.max_audio_seconds, lim.min_sample_rate, lim.max_sample_rate)
    audio = []
    for text in texts:
        pcm = np.concatenate(list(tts.synthesize(text)))
        audio.append(decode_upload(wav_bytes(pcm, tts.sample_rate), limits))
    return audio


def run_bias_bench(
    settings: Settings,
    commands: Sequence[tuple[str, str]] = COMMANDS,
    modes: Sequence[str] = MODES,
    tts: TTSEngine | None = None,
) -> dict[str, Any]:
    """Every command spoken by `tts` (default: settings.tts's piper), then heard by a whisper
    of settings.stt per bias mode."""
    from app.engines.stt_whisper import WhisperSTT

    if tts is None:
        from app.engines.tts_piper import PiperTTS

        tts = PiperTTS(settings.tts)
    names = [name for _, name in commands]
    audio = _speak(settings, tts, [text for text, _ in commands])
    rows: list[dict[str, Any]] = [{"said": t, "name": n, "heard": {}} for t, n in commands]
    summary: dict[str, Any] = {}
    for mode in modes:
        stt = WhisperSTT(settings.stt.model_copy(update={"bias_with": mode}))
        name_scores, word_scores, seconds = [], [], 0.0
        for row, samples in zip(rows, audio, strict=True):
            start = time.perf_counter()
            heard = stt.transcribe(samples, bias_names=names).text
            seconds += time.perf_counter() - start
            row["heard"][mode] = heard
            name_scores.append(name_recall(row["name"], heard))
            word_scores.append(word_recall(row["said"], heard))
        summary[mode] = {
            "name_word_recall": round(float(np.mean(name_scores)), 3),
            "names_heard_whole": sum(s == 1.0 for s in name_scores),
            "utterance_word_recall": round(float(np.mean(word_scores)), 3),
            "stt_ms_mean": round(seconds / len(rows) * 1000, 1),
        }
        del stt
    return {
        "tool": "voicefleet bench-bias",
        "version": __version__,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"host": platform.node(), "python": platform.python_version()},
        "settings": {
            "stt_model": settings.stt.model_name,
            "beam_size": settings.stt.beam_size,
            "compute_type": settings.stt.compute_type,
            "voice": settings.tts.voice_path.name,
            "utterances": len(rows),
            "names": names,
        },
        "summary": summary,
        "utterances": rows,
    }


def print_report(report: dict[str, Any]) -> None:
    s = report["settings"]
    print(f"voicefleet bench-bias — {s['stt_model']} (beam {s['beam_size']}, {s['compute_type']}),"
          f" voice {s['voice']}, {s['utterances']} utterances — {report['time']}")  # fmt: skip
    print("mode       name-word recall  names whole  utterance recall  STT ms")
    for mode, m in report["summary"].items():
        print(f"{mode:<10} {m['name_word_recall']:>16.3f}  {m['names_heard_whole']:>5}/"
              f"{s['utterances']:<5} {m['utterance_word_recall']:>16.3f}  "
              f"{m['stt_ms_mean']:>6.0f}")  # fmt: skip
    print("\nmisheard names (off → hotwords → prompt):")
    for row in report["utterances"]:
        heard = row["heard"]
        if any(name_recall(row["name"], h) < 1.0 for h in heard.values()):
            print(f"  {row['name']!r}: " + " → ".join(repr(heard[m]) for m in heard))


def _run(args: argparse.Namespace) -> int:
    settings = load_settings(Path(args.config) if args.config else None)
    report = run_bias_bench(settings)
    print_report(report)
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwrote {path}", file=sys.stderr)
    off, best = report["summary"]["off"], report["summary"][settings.stt.bias_with]
    return 0 if best["name_word_recall"] >= off["name_word_recall"] else 1


def register(sub: Any) -> None:
    p = sub.add_parser(
        "bench-bias",
        help="STT word recall on spoken device names, with and without name biasing",
    )
    p.add_argument("--config", help="YAML settings file (the unit's: its stt and tts models)")
    p.add_argument("--json", help="write the report here")
    p.set_defaults(func=_run)
