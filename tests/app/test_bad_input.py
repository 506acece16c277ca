"""Bad input: each kind gets a clear 4xx in the OpenAI error shape, and the service goes
on serving real requests."""

from __future__ import annotations

import io
import struct
import wave
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest

from tests.app.conftest import LLM_NAME, Service


def wav(seconds: float, rate: int = 16000, channels: int = 1, amplitude: float = 0.0) -> bytes:
    n = int(seconds * rate)
    t = np.arange(n) / rate
    mono = (amplitude * 32767 * np.sin(2 * np.pi * 220 * t)).astype("<i2")
    frames = np.repeat(mono, channels)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames.tobytes())
    return buf.getvalue()


def wav_declaring_rate(rate: int) -> bytes:
    data = bytearray(wav(1.0))
    struct.pack_into("<II", data, 24, rate, rate * 2)
    return bytes(data)


def transcribe(c: httpx.Client, content: bytes, **data: str) -> httpx.Response:
    return c.post(
        "/v1/audio/transcriptions",
        files={"file": ("a.wav", content, "audio/wav")},
        data={"model": "whisper-tiny.en", **data},
    )


def chat(c: httpx.Client, **body: Any) -> httpx.Response:
    payload = {"model": LLM_NAME, "messages": [{"role": "user", "content": "hi"}], **body}
    return c.post("/v1/chat/completions", json=payload)


BAD: dict[str, tuple[Callable[[httpx.Client], httpx.Response], int, str]] = {
    "empty file": (lambda c: transcribe(c, b""), 400, "empty_file"),
    "truncated wav": (lambda c: transcribe(c, wav(1.0)[:30]), 400, "invalid_audio"),
    "wav data cut short": (
        lambda c: transcribe(c, wav(2.0)[: 44 + 1000]), 400, "invalid_audio"
    ),
    "non-audio bytes": (
        lambda c: transcribe(c, b"<html><body>404 Not Found</body></html>" * 20),
        400, "invalid_audio",
    ),
    "wrong sample rate": (lambda c: transcribe(c, wav_declaring_rate(4000)), 400, "invalid_audio"),
    "oversize upload": (lambda c: transcribe(c, wav(70.0)), 413, "upload_too_large"),
    "too-long audio": (lambda c: transcribe(c, wav(25.0)), 413, "audio_too_long"),
    "unsupported transcript format": (
        lambda c: transcribe(c, wav(1.0), response_format="docx"), 400, "invalid_request"
    ),
    "transcription: unknown form field": (
        lambda c: transcribe(c, wav(1.0), diarize="true"), 400, "unsupported_parameter"
    ),
    "chat: unknown field": (lambda c: chat(c, logprobs=True), 400, "unsupported_parameter"),
    "chat: unknown message field": (
        lambda c: chat(c, messages=[{"role": "user", "content": "hi", "audio": {}}]),
        400, "unsupported_parameter",
    ),
    "chat: tool_choice names no tool": (
        lambda c: chat(
            c, tool_choice={"type": "function", "function": {"name": "nope"}},
            tools=[{"type": "function", "function": {"name": "get_time"}}],
        ),
        400, "invalid_request",
    ),
    "chat: image content": (
        lambda c: chat(c, messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]}]),
        400, "invalid_request",
    ),
    "huge text": (
        lambda c: chat(c, messages=[{"role": "user", "content": "x" * 20000}]),
        400, "input_too_long",
    ),
    "bad json": (
        lambda c: c.post(
            "/v1/chat/completions",
            content=b'{"model": ',
            headers={"content-type": "application/json"},
        ),
        400, "invalid_request",
    ),
    "no messages": (lambda c: chat(c, messages=[]), 400, "invalid_request"),
    "unknown model": (lambda c: chat(c, model="llama-70b"), 404, "model_not_found"),
    "max_tokens over the cap": (lambda c: chat(c, max_tokens=100000), 400, "max_tokens_too_large"),
    "missing api key": (
        lambda c: c.get("/v1/models", headers={"Authorization": ""}), 401, "no_key"
    ),
    "wrong api key": (
        lambda c: c.get("/v1/models", headers={"Authorization": "Bearer nope"}),
        401, "invalid_api_key",
    ),
    "speech: blank input": (
        lambda c: c.post("/v1/audio/speech", json={"model": "piper", "input": "   "}),
        400, "empty_input",
    ),
    "speech: unknown voice": (
        lambda c: c.post(
            "/v1/audio/speech", json={"model": "piper", "input": "hi", "voice": "darth"}
        ),
        400, "unknown_voice",
    ),
    "speech: ogg not offered": (
        lambda c: c.post(
            "/v1/audio/speech", json={"model": "piper", "input": "hi", "response_format": "ogg"}
        ),
        400, "invalid_request",
    ),
    "speech: unknown field": (
        lambda c: c.post(
            "/v1/audio/speech", json={"model": "piper", "input": "hi", "pitch": 2}
        ),
        400, "unsupported_parameter",
    ),
    "translation: English-only model": (
        lambda c: c.post(
            "/v1/audio/translations", files={"file": ("a.wav", wav(1.0), "audio/wav")},
            data={"model": "whisper-1"},
        ),
        400, "translation_unsupported",
    ),
    "voice: unknown form field": (
        lambda c: c.post(
            "/v1/voice", files={"file": ("s.wav", wav(1.0), "audio/wav")}, data={"voice": "x"}
        ),
        400, "unsupported_parameter",
    ),
    "voice: silence": (
        lambda c: c.post("/v1/voice", files={"file": ("s.wav", wav(2.0), "audio/wav")}),
        400, "no_speech",
    ),
}  # fmt: skip


@pytest.mark.parametrize("kind", list(BAD))
def test_bad_input_is_a_clear_4xx_and_service_keeps_serving(
    server_service: Service, kind: str
) -> None:
    make_request, status, code = BAD[kind]
    with server_service.client() as c:
        r = make_request(c)
        assert r.status_code == status, r.text
        err = r.json()["error"]
        assert err["code"] == code
        assert err["message"] and err["type"]
        if status == 401:
            assert r.headers["www-authenticate"] == "Bearer"
        # the next real request is served
        ok = chat(c, max_tokens=2)
        assert ok.status_code == 200, ok.text
        assert ok.json()["usage"]["completion_tokens"] >= 1


def test_health_needs_no_key(server_service: Service) -> None:
    with httpx.Client(base_url=server_service.url) as c:
        assert c.get("/healthz").status_code == 200
        assert c.get("/readyz").json()["status"] == "ready"
        assert c.get("/metrics").status_code == 401
