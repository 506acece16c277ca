"""The `describe` answer: the programs this unit serves, only those whose engine is enabled."""

from __future__ import annotations

import json
import logging
from importlib import metadata
from pathlib import Path
from typing import Any

from wyoming.info import (
    AsrModel,
    AsrProgram,
    Attribution,
    HandleModel,
    HandleProgram,
    Info,
    TtsProgram,
    TtsVoice,
    TtsVoiceSpeaker,
)

from app import __version__
from app.state import ServiceState

log = logging.getLogger("voicefleet.wyoming")

# Program names (what Home Assistant shows, and what select-program may name)
ASR_PROGRAM = "voicefleet-stt"
TTS_PROGRAM = "voicefleet-tts"
HANDLE_PROGRAM = "voicefleet-llm"

_FASTER_WHISPER = Attribution(name="SYSTRAN", url="https://github.com/SYSTRAN/faster-whisper")
_WHISPER = Attribution(name="OpenAI", url="https://github.com/openai/whisper")
_PIPER = Attribution(name="Open Home Foundation", url="https://github.com/OHF-Voice/piper1-gpl")
_PIPER_VOICES = Attribution(name="rhasspy", url="https://huggingface.co/rhasspy/piper-voices")
_LLAMA_CPP = Attribution(name="ggml-org", url="https://github.com/ggml-org/llama.cpp")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _stt_languages(language: str | None) -> list[str]:
    if language:
        return [language]
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    return sorted(_LANGUAGE_CODES)


def _voice_config(voice_path: Path) -> dict[str, Any]:
    try:
        config = json.loads(voice_path.with_name(voice_path.name + ".json").read_text())
    except (OSError, ValueError):
        log.warning("cannot read the piper voice config beside %s", voice_path)
        return {}
    return config if isinstance(config, dict) else {}


def voice_languages(config: dict[str, Any]) -> list[str]:
    code = (config.get("language") or {}).get("code")
    if not code:
        code = (config.get("espeak") or {}).get("voice")
    return [str(code)] if code else []


def build_info(state: ServiceState) -> Info:
    """asr and tts only where the engine is enabled and loaded; handle always (the LLM)."""
    s = state.settings
    engines = state.require_engines()
    # what wyoming.streaming allows; "request" streams where the request's context asks
    streams = s.wyoming.streaming != "off"
    info = Info()
    if engines.stt is not None:
        info.asr.append(
            AsrProgram(
                name=ASR_PROGRAM,
                description="faster-whisper speech-to-text on a voicefleet unit",
                attribution=_FASTER_WHISPER,
                installed=True,
                version=__version__,
                models=[
                    AsrModel(
                        name=s.stt.model_name,
                        description=f"{s.stt.model_name} (CTranslate2, {s.stt.compute_type})",
                        attribution=_WHISPER,
                        installed=True,
                        version=_version("faster-whisper"),
                        languages=_stt_languages(s.stt.language),
                    )
                ],
                supports_transcript_streaming=streams,
                requires_external_vad=True,
            )
        )
    if engines.tts is not None:
        config = _voice_config(s.tts.voice_path)
        speakers = sorted((config.get("speaker_id_map") or {}).keys())
        info.tts.append(
            TtsProgram(
                name=TTS_PROGRAM,
                description="piper text-to-speech on a voicefleet unit",
                attribution=_PIPER,
                installed=True,
                version=__version__,
                voices=[
                    TtsVoice(
                        name=engines.tts.voice_name,
                        description=f"{s.tts.voice_path.stem} ({engines.tts.sample_rate} Hz)",
                        attribution=_PIPER_VOICES,
                        installed=True,
                        version=_version("piper-tts"),
                        languages=voice_languages(config),
                        speakers=[TtsVoiceSpeaker(name=n) for n in speakers] or None,
                    )
                ],
                supports_synthesize_streaming=True,
            )
        )
    info.handle.append(
        HandleProgram(
            name=HANDLE_PROGRAM,
            description="LLM conversation agent (llama.cpp) on a voicefleet unit",
            attribution=_LLAMA_CPP,
            installed=True,
            version=__version__,
            models=[
                HandleModel(
                    name=engines.llm.model_name,
                    description=f"{engines.llm.model_name} via llama.cpp ({s.llm.backend})",
                    attribution=_LLAMA_CPP,
                    installed=True,
                    version=None,
                    # empty: any language (Home Assistant offers the agent for all of them)
                    languages=[],
                )
            ],
            supports_handled_streaming=streams,
            supports_home_control=False,
        )
    )
    return info
