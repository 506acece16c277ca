"""OpenAI Realtime `session.update`: the session object of both API versions -> engine settings.

GA (`session.type: "realtime"`): audio.input.{format, turn_detection, transcription,
noise_reduction}, audio.output.{format, voice, speed}, instructions, output_modalities,
max_output_tokens, tools, tool_choice, tracing. Beta (`OpenAI-Beta: realtime=v1`): modalities,
instructions, voice, input_audio_format, output_audio_format, input_audio_transcription,
turn_detection, temperature, max_response_output_tokens, tools, tool_choice.

A field this unit cannot honour is refused with an `error` naming it (`param`), and the
update is not applied. Accepted without effect, because there is nothing to choose: `voice`
(the unit has one piper voice), the transcription `model` (faster-whisper), `tracing`,
`include`, `noise_reduction: null`. `tools` (function tools) and `tool_choice` go to the LLM
engine's tool calling (the same as the chat route's).

turn_detection (docs/realtime.md): `server_vad` -> the Silero detector: `threshold` ->
vad_threshold (silence below threshold - 0.15), `prefix_padding_ms` -> speech_pad_ms,
`silence_duration_ms` -> commit_silence_ms (the reply still starts speculatively at
end_silence_ms and pauses shorter than silence_duration_ms merge); `semantic_vad` -> the
same detector with commit_silence_ms by `eagerness` (high 320, medium/auto 544, low 1024);
`null` -> no detection: the client commits (input_audio_buffer.commit) and asks for a
response (response.create).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.engines.base import ForcedTool, Tool, ToolChoice
from app.realtime.turns import TurnConfig
from app.settings import RealtimeSettings

EAGERNESS_COMMIT_MS = {"high": 320, "medium": 544, "auto": 544, "low": 1024}
OPENAI_RATE = 24000
_UNSET: Any = object()


class BadField(ValueError):
    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass
class SessionChanges:
    """What one session.update asks for (unset fields are left as they are)."""

    input_rate: int | None = None
    output_rate: int | None = None
    turn_detection: Any = _UNSET  # TurnConfig | None when set
    instructions: str | None = None
    audio_out: bool | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None

    @property
    def sets_turn_detection(self) -> bool:
        return self.turn_detection is not _UNSET


def _check_keys(obj: Any, allowed: set[str], where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise BadField(where, f"{where} must be an object")
    for key in obj:
        if key not in allowed:
            raise BadField(f"{where}.{key}", f"{where}.{key} is not supported by this server")
    return obj


def _rate(fmt: Any, where: str) -> int:
    """GA audio format {type: audio/pcm, rate} or beta "pcm16" -> sample rate."""
    if fmt == "pcm16":
        return OPENAI_RATE
    if isinstance(fmt, str):
        raise BadField(where, f"{where} {fmt!r}: only pcm16 audio is supported")
    fmt = _check_keys(fmt, {"type", "rate"}, where)
    if fmt.get("type", "audio/pcm") != "audio/pcm":
        raise BadField(f"{where}.type", f"{where}.type {fmt.get('type')!r}: only audio/pcm")
    rate = fmt.get("rate", OPENAI_RATE)
    if not isinstance(rate, int) or not 8000 <= rate <= 48000:
        raise BadField(f"{where}.rate", f"{where}.rate {rate!r}: 8000-48000 Hz PCM16 only")
    return rate


def turn_config(td: Any, base: RealtimeSettings, where: str) -> TurnConfig | None:
    if td is None:
        return None
    allowed = {"type", "threshold", "prefix_padding_ms", "silence_duration_ms",
               "create_response", "interrupt_response", "eagerness", "idle_timeout_ms"}  # fmt: skip
    td = _check_keys(td, allowed, where)
    kind = td.get("type", "server_vad")
    if kind not in ("server_vad", "semantic_vad"):
        raise BadField(f"{where}.type", f"{where}.type {kind!r}: server_vad or semantic_vad")
    if td.get("idle_timeout_ms") is not None:
        raise BadField(f"{where}.idle_timeout_ms", "idle_timeout_ms is not supported")
    update: dict[str, Any] = {}
    try:
        if kind == "server_vad":
            if "threshold" in td:
                threshold = float(td["threshold"])
                if not 0 < threshold < 1:
                    raise ValueError
                update["vad_threshold"] = threshold
                update["vad_neg_threshold"] = max(0.01, threshold - 0.15)
            if "prefix_padding_ms" in td:
                update["speech_pad_ms"] = max(0, int(td["prefix_padding_ms"]))
            if "silence_duration_ms" in td:
                update["commit_silence_ms"] = max(64, int(td["silence_duration_ms"]))
        elif "eagerness" in td:
            update["commit_silence_ms"] = EAGERNESS_COMMIT_MS[td["eagerness"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise BadField(where, f"{where}: a value is out of range or of the wrong type") from exc
    if "commit_silence_ms" in update:
        update["end_silence_ms"] = min(base.end_silence_ms, update["commit_silence_ms"])
    settings = base.model_copy(update=update)
    return TurnConfig(
        settings,
        create_response=bool(td.get("create_response", True)),
        interrupt_response=bool(td.get("interrupt_response", True)),
        kind=kind,
    )


def _modalities(value: Any, where: str) -> bool:
    if value in (["audio"], ["text", "audio"], ["audio", "text"]):
        return True
    if value == ["text"]:
        return False
    raise BadField(where, f'{where} {value!r}: ["audio"] or ["text"]')


def _max_tokens(value: Any, cap: int, where: str) -> int:
    if value == "inf":
        return cap
    if not isinstance(value, int) or value < 1:
        raise BadField(where, f"{where} must be a positive integer or 'inf'")
    if value > cap:
        raise BadField(where, f"{where} is capped at {cap} on this unit")
    return value


def _tools(value: Any, where: str) -> list[Tool]:
    if not isinstance(value, list):
        raise BadField(where, f"{where} must be a list")
    tools = []
    for i, tool in enumerate(value):
        _check_keys(tool, {"type", "name", "description", "parameters"}, f"{where}[{i}]")
        if tool.get("type", "function") != "function" or not tool.get("name"):
            raise BadField(f"{where}[{i}]", "only function tools with a name are supported")
        params = tool.get("parameters")
        if params is not None and not isinstance(params, dict):
            raise BadField(f"{where}[{i}].parameters", "parameters must be a JSON schema")
        tools.append(Tool(str(tool["name"]), tool.get("description"), params))
    return tools


_CHOICES: dict[str, ToolChoice] = {"auto": "auto", "none": "none", "required": "required"}


def _tool_choice(value: Any, where: str) -> ToolChoice:
    """ "auto" | "none" | "required" | {"type": "function", "name": ...} (beta: a name)."""
    if isinstance(value, str) and value in _CHOICES:
        return _CHOICES[value]
    if isinstance(value, str) and value:
        return ForcedTool(value)
    if isinstance(value, dict) and value.get("type") == "function" and value.get("name"):
        _check_keys(value, {"type", "name"}, where)
        return ForcedTool(str(value["name"]))
    raise BadField(where, f"{where}: auto, none, required or a function")


def parse_session(session: Any, base: RealtimeSettings, cap: int, beta: bool) -> SessionChanges:
    """Validate a session.update's `session` object; raises BadField."""
    ch = SessionChanges()
    common = {"model", "instructions", "tools", "tool_choice", "tracing", "include"}
    if beta:
        allowed = common | {"modalities", "voice", "input_audio_format", "output_audio_format",
                            "input_audio_transcription", "turn_detection", "temperature",
                            "max_response_output_tokens", "input_audio_noise_reduction",
                            "speed"}  # fmt: skip
    else:
        allowed = common | {"type", "audio", "output_modalities", "max_output_tokens"}
    s = _check_keys(session, allowed, "session")
    if not beta and s.get("type", "realtime") != "realtime":
        raise BadField("session.type", "session.type must be 'realtime' (conversation)")
    if "instructions" in s:
        if not isinstance(s["instructions"], str):
            raise BadField("session.instructions", "session.instructions must be a string")
        ch.instructions = s["instructions"]
    if "tools" in s:
        ch.tools = _tools(s["tools"], "session.tools")
    if "tool_choice" in s:
        ch.tool_choice = _tool_choice(s["tool_choice"], "session.tool_choice")
    if beta:
        _beta(s, ch, base, cap)
    else:
        _ga(s, ch, base, cap)
    return ch


def _beta(s: dict[str, Any], ch: SessionChanges, base: RealtimeSettings, cap: int) -> None:
    if "modalities" in s:
        ch.audio_out = _modalities(s["modalities"], "session.modalities")
    if "input_audio_format" in s:
        ch.input_rate = _rate(s["input_audio_format"], "session.input_audio_format")
    if "output_audio_format" in s:
        ch.output_rate = _rate(s["output_audio_format"], "session.output_audio_format")
    if "turn_detection" in s:
        ch.turn_detection = turn_config(s["turn_detection"], base, "session.turn_detection")
    if "temperature" in s:
        t = s["temperature"]
        if not isinstance(t, int | float) or not 0 <= t <= 2:
            raise BadField("session.temperature", "session.temperature must be 0-2")
        ch.temperature = float(t)
    if "max_response_output_tokens" in s:
        where = "session.max_response_output_tokens"
        ch.max_tokens = _max_tokens(s["max_response_output_tokens"], cap, where)
    if s.get("input_audio_noise_reduction") is not None:
        raise BadField("session.input_audio_noise_reduction", "noise reduction is not available")
    if s.get("speed", 1.0) != 1.0:
        raise BadField("session.speed", "session.speed other than 1.0 is not supported")


def _ga(s: dict[str, Any], ch: SessionChanges, base: RealtimeSettings, cap: int) -> None:
    if "output_modalities" in s:
        ch.audio_out = _modalities(s["output_modalities"], "session.output_modalities")
    if "max_output_tokens" in s:
        ch.max_tokens = _max_tokens(s["max_output_tokens"], cap, "session.max_output_tokens")
    audio = _check_keys(s.get("audio", {}), {"input", "output"}, "session.audio")
    where = "session.audio.input"
    inp = _check_keys(audio.get("input", {}), {"format", "turn_detection", "transcription",
                                               "noise_reduction"}, where)  # fmt: skip
    if "format" in inp:
        ch.input_rate = _rate(inp["format"], f"{where}.format")
    if "turn_detection" in inp:
        ch.turn_detection = turn_config(inp["turn_detection"], base, f"{where}.turn_detection")
    if inp.get("noise_reduction") is not None:
        raise BadField(f"{where}.noise_reduction", "noise reduction is not available")
    where = "session.audio.output"
    out = _check_keys(audio.get("output", {}), {"format", "voice", "speed"}, where)
    if "format" in out:
        ch.output_rate = _rate(out["format"], f"{where}.format")
    if out.get("speed", 1.0) != 1.0:
        raise BadField(f"{where}.speed", "speed other than 1.0 is not supported")
