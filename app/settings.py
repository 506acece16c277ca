"""The service's one settings model.

Sources, highest priority first: constructor arguments, environment (`VOICEFLEET_` prefix,
nested with `__`, e.g. `VOICEFLEET_LLM__BACKEND=server`), the YAML file named by
`VOICEFLEET_CONFIG` (the Ansible role templates it from group_vars), then defaults.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

LOOPBACK_HOSTS = {"127.0.0.1", "::1", "localhost"}
# load_settings(path)'s file, for the one Settings() it builds: the process environment is
# left alone (a later Settings(), a child process, another test, sees only VOICEFLEET_CONFIG)
_CONFIG_FILE: ContextVar[Path | None] = ContextVar("voicefleet_config_file", default=None)


class _Section(BaseModel):
    # a misspelt key (`llm.paralel: 4`) is an error, not a setting silently left at its default
    model_config = ConfigDict(extra="forbid")


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    # Bearer key for every route except /healthz and /readyz. Without one the service only
    # binds to loopback (see Settings._check_exposure).
    api_key: SecretStr | None = None
    # Requests served at once across all routes; beyond this: 429 with Retry-After.
    max_in_flight: int = Field(32, ge=1)
    log_level: str = "info"


class STTSettings(_Section):
    # false: no speech-to-text on this unit (no model loaded; audio-in routes answer 501)
    enabled: bool = True
    model_name: str = "whisper"
    # more names the `model` field may give (OpenAI's, so unmodified clients work)
    model_aliases: list[str] = ["whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe"]
    model_dir: Path = Path("/opt/voicefleet/models/current/stt")
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    compute_type: str = "int8"
    beam_size: int = Field(1, ge=1, le=10)
    language: str | None = "en"
    cpu_threads: int = Field(0, ge=0)
    # Transcriptions run at once; further requests wait (queue bounded by max_queue).
    concurrency: int = Field(2, ge=1)
    max_queue: int = Field(16, ge=0)
    # Names whisper should expect (devices, areas: "kitchen pendant lights"), for every
    # transcription; a Wyoming client may add its own (transcribe.transcript_names/_terms).
    # bias_with: faster-whisper's `hotwords` or its `initial_prompt` (measured in
    # docs/benchmarks.md, "Device-name biasing"); "off" ignores the names.
    bias_names: list[str] = Field(default_factory=list)
    bias_with: Literal["hotwords", "prompt", "off"] = "hotwords"
    # names and terms of one request together, in characters (whisper's context window
    # holds ~220 tokens); more is refused with a clear error, not cut
    max_bias_chars: int = Field(600, ge=16)


class LLMSettings(_Section):
    backend: Literal["embedded", "server"] = "embedded"
    model_name: str = "llama-3.2-3b-instruct"
    # more names the `model` field may give (e.g. the name a client is configured with)
    model_aliases: list[str] = []
    # server backend: llama-server (production: continuous batching over `parallel` slots)
    server_url: str = "http://127.0.0.1:8080"
    server_api_key: SecretStr | None = None
    request_timeout_s: float = Field(120.0, gt=0)
    # embedded backend: llama-cpp-python in this process
    model_path: Path = Path("/opt/voicefleet/models/current/llm/model.gguf")
    threads: int = Field(0, ge=0)
    # Context per conversation. llama-server splits -c across -np slots, so the unit runs
    # -c ctx_per_slot*parallel (the field config's `-c 2048 -np 8` gave 256 tokens each).
    ctx_per_slot: int = Field(2048, ge=256)
    parallel: int = Field(8, ge=1)
    max_tokens_cap: int = Field(512, ge=1)
    default_max_tokens: int = Field(256, ge=1)
    system_prompt: str = (
        "You are a helpful voice assistant. Answer briefly in plain spoken sentences, "
        "without lists or markdown."
    )
    max_queue: int = Field(32, ge=0)
    # server backend: ask llama-server to keep each conversation's prefix in its slot's KV
    # cache, so a follow-up turn prefills only its new tokens. false re-prefills every
    # turn: only for measuring what the cache saves (`voicefleet bench --followup`).
    cache_prompt: bool = True

    @model_validator(mode="after")
    def _defaults_within_cap(self) -> LLMSettings:
        if self.default_max_tokens > self.max_tokens_cap:
            raise ValueError("llm.default_max_tokens must not exceed llm.max_tokens_cap")
        if self.max_tokens_cap >= self.ctx_per_slot:
            raise ValueError("llm.max_tokens_cap must be below llm.ctx_per_slot")
        return self


class TTSSettings(_Section):
    # false: no text-to-speech on this unit (no voice loaded; audio-out routes answer 501)
    enabled: bool = True
    model_name: str = "piper"
    # more names the `model` field may give (OpenAI's, so unmodified clients work)
    model_aliases: list[str] = ["tts-1", "tts-1-hd", "gpt-4o-mini-tts"]
    voice_path: Path = Path("/opt/voicefleet/models/current/tts/voice.onnx")
    voice_name: str = "default"
    speaker_id: int | None = None
    concurrency: int = Field(2, ge=1)
    max_queue: int = Field(16, ge=0)


class LimitsSettings(_Section):
    max_upload_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    max_audio_seconds: float = Field(30.0, gt=0)
    max_input_chars: int = Field(8000, ge=1)
    max_speech_chars: int = Field(2000, ge=1)
    min_sample_rate: int = 8000
    # recordings up to 192 kHz are resampled; the range guards against a garbage header
    max_sample_rate: int = 192000
    # Seconds a request may wait for an engine before 503 + Retry-After.
    queue_timeout_s: float = Field(30.0, gt=0)


class RealtimeSettings(_Section):
    """The /v1/realtime WebSocket: limits, turn detection (Silero VAD), reply streaming."""

    max_sessions: int = Field(16, ge=1)
    # one WebSocket message (a PCM frame or a JSON event); larger ones close with 1009
    max_frame_bytes: int = Field(64 * 1024, ge=1024)
    max_session_s: float = Field(1800.0, gt=0)
    # no message from the client for this long closes the session (4001)
    idle_timeout_s: float = Field(60.0, gt=0)
    # outgoing bytes a client may fall behind by before it is closed as a slow reader (4002).
    # A sentence's audio is queued at once (up to 160 characters: ~10 s, ~0.5 MB at 22 kHz),
    # so less than 1 MiB would cut off clients that read as fast as they can.
    max_send_buffer_bytes: int = Field(4 * 1024 * 1024, ge=1024 * 1024)
    default_sample_rate: int = Field(16000, ge=8000, le=48000)
    # Silero speech probability: >= threshold is speech, < neg_threshold is silence
    vad_threshold: float = Field(0.5, gt=0, lt=1)
    vad_neg_threshold: float = Field(0.35, gt=0, lt=1)
    # voiced time before speech_started (shorter blips are ignored)
    min_speech_ms: int = Field(128, ge=32)
    # silence that ends an utterance: speech_stopped, the reply starts speculatively
    end_silence_ms: int = Field(128, ge=64)
    # silence after which the utterance so far is transcribed already, before speech_stopped:
    # when no voice came in between, the reply starts from that transcript instead of a new
    # STT pass (one such pass in flight per session). 0: STT starts at speech_stopped.
    early_stt_silence_ms: int = Field(64, ge=0)
    # once such a pass has the words so far and no reply of the session is using the LLM,
    # evaluate the conversation with them into the session's llama-server slot (a prefill,
    # nothing generated): at end of speech only the last words are new to it. Needs
    # early_stt_silence_ms > 0, llm.backend server and llm.cache_prompt. false: no prefill.
    prefill_llm: bool = True
    # silence before the turn is committed and its reply may be heard; speech resuming
    # earlier cancels the speculative reply and merges the two parts into one request
    commit_silence_ms: int = Field(544, ge=64)
    # audio kept from before speech_started (the VAD reacts a window or two late)
    speech_pad_ms: int = Field(192, ge=0)
    max_utterance_s: float = Field(20.0, gt=1)
    # reply: max_tokens (None: llm.default_max_tokens), sentence chunks for TTS
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    chunk_max_chars: int = Field(160, ge=20)
    # a first chunk may end at a comma or a phrase break once this long (earlier first audio:
    # piper's time grows with the piece's length; 24 before 2026-12)
    first_chunk_min_chars: int = Field(10, ge=1)
    # history trimming keeps the system prompt, drops the oldest whole turns down to this
    # fraction of the budget at once, so the cached prefix changes rarely
    history_low_water: float = Field(0.5, gt=0.0, lt=1.0)

    @model_validator(mode="after")
    def _commit_after_end(self) -> RealtimeSettings:
        if self.commit_silence_ms < self.end_silence_ms:
            raise ValueError("realtime.commit_silence_ms must be >= realtime.end_silence_ms")
        if self.early_stt_silence_ms >= self.end_silence_ms:
            raise ValueError("realtime.early_stt_silence_ms must be below realtime.end_silence_ms")
        if self.vad_neg_threshold > self.vad_threshold:
            raise ValueError("realtime.vad_neg_threshold must be <= realtime.vad_threshold")
        return self


class WyomingSettings(_Section):
    """The Wyoming protocol server (Home Assistant's voice pipeline), run by the service in its
    own process: asr, tts and handle (the LLM as a conversation agent) over the same engines,
    gates, limits and metrics as the HTTP API (docs/wyoming.md)."""

    enabled: bool = False
    host: str = "127.0.0.1"
    # 10600: the Wyoming add-ons' ports stay free (piper 10200, whisper 10300, openWakeWord
    # 10400, wyoming-satellite 10700) so a unit may also run those
    port: int = Field(10600, ge=1, le=65535)
    # Wyoming has no authentication: a non-loopback host must say it accepts that exposure
    allow_unauthenticated: bool = False
    # announce the server over mDNS (_wyoming._tcp) so Home Assistant discovers it
    zeroconf: bool = False
    # the announced name (None: voicefleet-<hostname>)
    zeroconf_name: str | None = None
    max_connections: int = Field(16, ge=1)
    # no event from the client for this long closes the connection
    idle_timeout_s: float = Field(60.0, gt=0)
    # one event's header line + data + payload; larger: error event and close
    max_event_bytes: int = Field(1024 * 1024, ge=4096)
    # one audio stream (None: limits.max_audio_seconds / limits.max_upload_bytes)
    max_audio_seconds: float | None = Field(None, gt=0)
    max_audio_bytes: int | None = Field(None, ge=1024)
    # handle (conversation agent): reply length (None: llm.default_max_tokens), temperature,
    # conversations remembered by Home Assistant's conversation_id (oldest forgotten first)
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    max_conversations: int = Field(64, ge=1)
    # tts: samples per audio-chunk event
    samples_per_chunk: int = Field(1024, ge=64)
    # streamed replies, the protocol's way: handled-start, a handled-chunk per sentence as
    # the LLM writes it, handled (the whole reply), handled-stop; for asr transcript-start, a
    # transcript-chunk per whisper segment, transcript, transcript-stop. "request": for a
    # request whose context holds {"streaming": true}; "always": every reply (a client that
    # knows only handled/transcript reads on to it, as Home Assistant does); "off": never,
    # and describe says so
    streaming: Literal["request", "always", "off"] = "request"

    @model_validator(mode="after")
    def _check_exposure(self) -> WyomingSettings:
        if self.enabled and self.host not in LOOPBACK_HOSTS and not self.allow_unauthenticated:
            raise ValueError(
                f"wyoming.host={self.host} is not loopback, and the Wyoming protocol has no "
                "authentication: anyone who reaches the port can transcribe, synthesize and "
                "chat with the LLM on this unit. Bind a trusted interface only (firewall the "
                "port to Home Assistant) and set wyoming.allow_unauthenticated: true "
                "(VOICEFLEET_WYOMING__ALLOW_UNAUTHENTICATED=true) to accept that"
            )
        return self


class OllamaSettings(_Section):
    """The Ollama-compatible API (/api/chat, /api/tags, /api/show, /api/version) on the
    service's own port, for Home Assistant's Ollama integration (docs/wyoming.md)."""

    enabled: bool = True
    # Home Assistant's Ollama integration sends no key. Where server.api_key is set (the
    # service binds a non-loopback host), /api/* asks for the key like every route unless
    # this says keyless clients are accepted: anyone who reaches the port may then chat
    # with the LLM (firewall it to Home Assistant). The key still works when sent.
    allow_unauthenticated: bool = False
    # Ollama's API has no tool_choice: "auto" lets the model decide whether to call one of
    # the request's tools; "required" makes a new user turn with tools a call (llama-server's
    # grammar), for small models that never choose one; after a tool result: "auto"
    tool_choice: Literal["auto", "required"] = "auto"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="VOICEFLEET_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    server: ServerSettings = ServerSettings()
    stt: STTSettings = STTSettings()
    llm: LLMSettings = LLMSettings()
    tts: TTSSettings = TTSSettings()
    limits: LimitsSettings = LimitsSettings()
    realtime: RealtimeSettings = RealtimeSettings()
    wyoming: WyomingSettings = WyomingSettings()
    ollama: OllamaSettings = OllamaSettings()

    @model_validator(mode="after")
    def _check_exposure(self) -> Settings:
        if self.server.api_key is None and self.server.host not in LOOPBACK_HOSTS:
            raise ValueError(
                f"server.host={self.server.host} is not loopback: set server.api_key "
                "(VOICEFLEET_SERVER__API_KEY) before exposing the service"
            )
        names = [
            name
            for section in (self.stt, self.llm, self.tts)
            for name in (section.model_name, *section.model_aliases)
        ]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"model names must be unique across stt, llm and tts: {repeated}")
        wyoming_max = self.wyoming.max_tokens
        if wyoming_max is not None and wyoming_max > self.llm.max_tokens_cap:
            raise ValueError(
                f"wyoming.max_tokens={wyoming_max} is over llm.max_tokens_cap "
                f"({self.llm.max_tokens_cap})"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        explicit = _CONFIG_FILE.get()
        config_file = str(explicit) if explicit else os.environ.get("VOICEFLEET_CONFIG")
        if config_file:
            path = Path(config_file)
            if not path.is_file():
                named = "--config" if explicit else "VOICEFLEET_CONFIG"
                raise FileNotFoundError(f"{named} {config_file}: no such file")
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return tuple(sources)


def load_settings(config_file: Path | None = None) -> Settings:
    """Settings from env + the optional YAML file (an explicit path wins over the env var)."""
    token = _CONFIG_FILE.set(config_file)
    try:
        return Settings()
    finally:
        _CONFIG_FILE.reset(token)
