"""A unit (or a GPU bench box) with only the LLM engine: stt.enabled / tts.enabled false.

The engines are loaded the way `voicefleet serve` loads them (not injected), against the real
llama-server; the audio routes refuse with a clear 501 and the LLM routes keep serving."""

from __future__ import annotations

import io
import wave
from collections.abc import Iterator

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.app.conftest import LLM_NAME, Service, make_settings, run_service
from tests.conftest import LlamaServer, ModelPaths


@pytest.fixture(scope="module")
def llm_only(model_paths: ModelPaths, llama_server: LlamaServer) -> Iterator[Service]:
    settings = make_settings(
        model_paths, "server", llama_server, stt={"enabled": False}, tts={"enabled": False}
    )
    yield from run_service(settings, None)


def _silence_wav() -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\0\0" * 16000)
    return buf.getvalue()


def test_ready_and_lists_only_the_llm(llm_only: Service) -> None:
    with llm_only.client() as c:
        ready = c.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"llm": True}
        models = c.get("/v1/models").json()["data"]
        assert [(m["id"], m["kind"]) for m in models] == [(LLM_NAME, "llm")]


def test_chat_serves(llm_only: Service) -> None:
    with llm_only.client() as c:
        r = c.post(
            "/v1/chat/completions",
            json={
                "model": LLM_NAME,
                "messages": [{"role": "user", "content": "Say hello."}],
                "max_tokens": 8,
            },
        )
        assert r.status_code == 200, r.text
        assert r.json()["usage"]["completion_tokens"] > 0


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/v1/audio/transcriptions", "speech-to-text"),
        ("/v1/audio/speech", "text-to-speech"),
        ("/v1/voice", "speech-to-text"),
    ],
)
def test_audio_routes_refuse_clearly(llm_only: Service, path: str, kind: str) -> None:
    with llm_only.client() as c:
        if path == "/v1/audio/speech":
            r = c.post(path, json={"model": "piper", "input": "Hello there.", "voice": "default"})
        else:
            r = c.post(path, files={"file": ("a.wav", _silence_wav(), "audio/wav")})
        assert r.status_code == 501, r.text
        error = r.json()["error"]
        assert error["code"] == "engine_disabled"
        assert kind in error["message"]
        # and the unit keeps serving
        assert c.get("/readyz").status_code == 200


def test_realtime_refused_at_handshake(llm_only: Service) -> None:
    url = llm_only.url.replace("http://", "ws://") + "/v1/realtime"
    with pytest.raises(InvalidStatus) as refused:
        connect(url, additional_headers=llm_only.headers, open_timeout=10)
    assert refused.value.response.status_code == 501
