"""Services under test: the real app on a real uvicorn server on a loopback port, with the
real engines (loaded once per session and shared by the app instances)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn

from app.bench.waiting import wait_http
from app.engines.base import LLMEngine
from app.server import create_app
from app.settings import Settings
from app.state import Engines, ServiceState
from tests.conftest import API_KEY, LlamaServer, ModelPaths, free_port

LLM_NAME = "smollm2-135m-instruct"


def make_settings(
    paths: ModelPaths, backend: str, llama: LlamaServer | None = None, **overrides: Any
) -> Settings:
    llm: dict[str, Any] = {
        "backend": backend,
        "model_name": LLM_NAME,
        "model_path": str(paths.llm_gguf),
        "ctx_per_slot": llama.ctx_per_slot if llama else 1024,
        "parallel": llama.parallel if llama else 8,
        "max_tokens_cap": 256,
        "default_max_tokens": 48,
        "threads": 2,
    }
    if llama is not None:
        llm |= {"server_url": llama.url, "server_api_key": llama.api_key}
    data: dict[str, Any] = {
        "server": {"api_key": API_KEY},
        "stt": {"model_dir": str(paths.stt_dir), "model_name": "whisper-tiny.en"},
        "tts": {"voice_path": str(paths.tts_voice), "voice_name": "joe"},
        "llm": llm,
        "limits": {"max_audio_seconds": 20, "max_upload_bytes": 2_000_000},
    }
    for section, values in overrides.items():
        data[section] = {**data.get(section, {}), **values}
    return Settings(**data)


@dataclass
class Service:
    url: str
    settings: Settings
    headers: dict[str, str]
    # the running app's state (engines, gates, metrics), for tests that look inside
    state: ServiceState

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=120, **kw)


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # running in a thread
        pass


def run_service(
    settings: Settings,
    engines: Engines | None,
    ready: bool = True,
    uvicorn_options: dict[str, Any] | None = None,
) -> Iterator[Service]:
    """Serve on a free loopback port; engines=None loads them as `voicefleet serve` does.
    ready=False waits for /healthz only (a service whose backend is down never gets ready).
    `uvicorn_options`: more uvicorn.Config arguments than `voicefleet serve` sets."""
    port = free_port()
    app = create_app(settings, engines=engines)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", **(uvicorn_options or {})
    )
    server = _Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/{'readyz' if ready else 'healthz'}", timeout=60)
        yield Service(url, settings, {"Authorization": f"Bearer {API_KEY}"}, app.state.vf)
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture(scope="session")
def stt_tts(model_paths: ModelPaths) -> tuple[Any, Any]:
    from app.engines.stt_whisper import WhisperSTT
    from app.engines.tts_piper import PiperTTS

    s = make_settings(model_paths, "embedded")
    return WhisperSTT(s.stt), PiperTTS(s.tts)


def _engines(stt_tts: tuple[Any, Any], llm: LLMEngine) -> Engines:
    return Engines(stt=stt_tts[0], llm=llm, tts=stt_tts[1])


def server_engines(stt_tts: tuple[Any, Any], settings: Settings) -> Engines:
    """The shared speech engines with an LLM client for settings.llm's llama-server."""
    from app.engines.llm_server import LlamaServerLLM

    return _engines(stt_tts, LlamaServerLLM(settings.llm))


@pytest.fixture(scope="session")
def embedded_service(model_paths: ModelPaths, stt_tts: tuple[Any, Any]) -> Iterator[Service]:
    import asyncio

    from app.engines.llm_embedded import EmbeddedLLM

    settings = make_settings(model_paths, "embedded")
    llm = EmbeddedLLM(settings.llm)
    asyncio.run(llm.start())
    yield from run_service(settings, _engines(stt_tts, llm))


@pytest.fixture(scope="session")
def server_service(
    model_paths: ModelPaths, stt_tts: tuple[Any, Any], llama_server: LlamaServer
) -> Iterator[Service]:
    settings = make_settings(model_paths, "server", llama_server)
    yield from run_service(settings, server_engines(stt_tts, settings))


@pytest.fixture(params=["embedded", "server"])
def service(request: pytest.FixtureRequest) -> Service:
    """Both LLM backends, for the contract tests."""
    svc: Service = request.getfixturevalue(f"{request.param}_service")
    return svc


@pytest.fixture(scope="session")
def speech_wav(server_service: Service) -> bytes:
    """A real utterance, spoken by the service's own TTS."""
    with server_service.client() as c:
        r = c.post(
            "/v1/audio/speech",
            json={"model": "piper", "input": SPOKEN, "voice": "joe", "response_format": "wav"},
        )
        r.raise_for_status()
        return r.content


SPOKEN = "What will the weather be like tomorrow morning?"
