"""What the routes share: settings, loaded engines, their gates, metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request

from app.engines.base import LLMEngine, STTEngine, TTSEngine
from app.errors import APIError
from app.limits import EngineGate
from app.metrics import Metrics
from app.settings import Settings

if TYPE_CHECKING:
    from app.wyoming.server import WyomingServer


@dataclass
class Engines:
    llm: LLMEngine
    # None where the settings disable the engine (stt.enabled / tts.enabled false)
    stt: STTEngine | None = None
    tts: TTSEngine | None = None


@dataclass
class ServiceState:
    settings: Settings
    metrics: Metrics = field(default_factory=Metrics)
    engines: Engines | None = None
    # the Wyoming server (wyoming.enabled), running once the engines are loaded
    wyoming: WyomingServer | None = None
    stt_gate: EngineGate = field(init=False)
    llm_gate: EngineGate = field(init=False)
    tts_gate: EngineGate = field(init=False)

    def __post_init__(self) -> None:
        s = self.settings
        timeout = s.limits.queue_timeout_s
        self.stt_gate = EngineGate("stt", s.stt.concurrency, s.stt.max_queue, timeout)
        # llama-server batches `parallel` conversations; the embedded backend runs one.
        llm_concurrency = s.llm.parallel if s.llm.backend == "server" else 1
        self.llm_gate = EngineGate("llm", llm_concurrency, s.llm.max_queue, timeout)
        self.tts_gate = EngineGate("tts", s.tts.concurrency, s.tts.max_queue, timeout)

    def require_engines(self) -> Engines:
        if self.engines is None:
            raise APIError(503, "engines are still loading", code="not_ready", retry_after=2)
        return self.engines

    def require_stt(self) -> STTEngine:
        stt = self.require_engines().stt
        if stt is None:
            raise _disabled("speech-to-text", "stt")
        return stt

    def require_tts(self) -> TTSEngine:
        tts = self.require_engines().tts
        if tts is None:
            raise _disabled("text-to-speech", "tts")
        return tts


def _disabled(what: str, section: str) -> APIError:
    return APIError(
        501,
        f"{what} is disabled on this unit ({section}.enabled: false)",
        code="engine_disabled",
    )


async def _get_state(request: Request) -> ServiceState:
    # async: a plain def dependency would run in FastAPI's thread pool (see app/auth.py)
    state: ServiceState = request.app.state.vf
    return state


State = Annotated[ServiceState, Depends(_get_state)]
