"""Overload and streaming speech against a real service: clear 429s, Retry-After, no hang."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from tests.app.conftest import LLM_NAME, Service, make_settings, run_service, server_engines
from tests.conftest import LlamaServer, ModelPaths


@pytest.fixture(scope="module")
def tiny_service(
    model_paths: ModelPaths, stt_tts: tuple[Any, Any], llama_server: LlamaServer
) -> Iterator[Service]:
    """A service that serves one request at once."""
    settings = make_settings(model_paths, "server", llama_server, server={"max_in_flight": 1})
    yield from run_service(settings, server_engines(stt_tts, settings))


def test_over_in_flight_limit_is_429_with_retry_after(tiny_service: Service) -> None:
    payload = {
        "model": LLM_NAME,
        "messages": [{"role": "user", "content": "Count from 1 to 300, separated by commas."}],
        "max_tokens": 150,
        "temperature": 0,
        "stream": True,
    }
    with tiny_service.client() as c, c.stream("POST", "/v1/chat/completions", json=payload) as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        first = next(lines)  # the stream is open: the one slot is taken
        assert first.startswith("data: ")
        with tiny_service.client() as other:
            busy = other.get("/v1/models")
            assert busy.status_code == 429
            assert busy.json()["error"]["code"] == "too_many_requests"
            assert int(busy.headers["retry-after"]) >= 1
            # health stays answerable under load
            assert other.get("/healthz").status_code == 200
        assert any("[DONE]" in line for line in lines)
    with tiny_service.client() as c:
        assert c.get("/v1/models").status_code == 200
        metrics = c.get("/metrics").text
    assert 'voicefleet_requests_total{route="/v1/models",status="429"}' in metrics


def test_speech_pcm_streams_sentence_by_sentence(server_service: Service) -> None:
    text = "The first sentence is short. The second one follows it. And a third."
    chunks = []
    with (
        server_service.client() as c,
        c.stream(
            "POST",
            "/v1/audio/speech",
            json={"model": "piper", "input": text, "response_format": "pcm"},
        ) as r,
    ):
        assert r.status_code == 200
        rate = int(r.headers["x-sample-rate"])
        chunks = [chunk for chunk in r.iter_bytes() if chunk]
    pcm = b"".join(chunks)
    assert len(pcm) % 2 == 0
    seconds = len(pcm) / 2 / rate
    assert 2.0 < seconds < 15.0


def test_upload_declared_too_large_is_refused_before_reading(server_service: Service) -> None:
    limit = server_service.settings.limits.max_upload_bytes
    host, port = server_service.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            (
                "POST /v1/audio/transcriptions HTTP/1.1\r\n"
                f"Host: {host}\r\n{_auth(server_service)}\r\n"
                "Content-Type: multipart/form-data; boundary=x\r\n"
                f"Content-Length: {limit * 4}\r\n\r\n"
            ).encode()
            + b"--x\r\n"  # a few bytes of the promised body, then wait for the answer
        )
        answer = sock.recv(65536).decode()
    status_line, _, rest = answer.partition("\r\n")
    assert " 413 " in status_line
    assert "upload_too_large" in rest


def _auth(svc: Service) -> str:
    return "\r\n".join(f"{k}: {v}" for k, v in svc.headers.items())
