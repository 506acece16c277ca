"""/v1/voice: speech in -> speech out, with stage timings; 8 concurrent turns."""

from __future__ import annotations

import base64
import io
import json
import wave
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import unquote

import httpx

from tests.app.conftest import Service


def _turn(svc: Service, audio: bytes, **data: str) -> httpx.Response:
    with svc.client() as c:
        return c.post(
            "/v1/voice",
            files={"file": ("q.wav", audio, "audio/wav")},
            data={"max_tokens": "24", **data},
        )


def _seconds(wav_bytes: bytes) -> float:
    with wave.open(io.BytesIO(wav_bytes)) as w:
        return w.getnframes() / w.getframerate()


def test_voice_turn_wav_with_headers(server_service: Service, speech_wav: bytes) -> None:
    r = _turn(server_service, speech_wav)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "audio/wav"
    assert _seconds(r.content) > 0.3
    assert "weather" in unquote(r.headers["x-transcript"]).lower()
    assert unquote(r.headers["x-reply-text"]).strip()
    timings = json.loads(r.headers["x-timings"])
    for stage in ("stt_ms", "llm_ttft_ms", "llm_total_ms", "tts_ms", "total_ms"):
        assert timings[stage] > 0, stage
    assert timings["total_ms"] >= timings["stt_ms"] + timings["llm_total_ms"] + timings["tts_ms"]
    assert "stt;dur=" in r.headers["server-timing"]


def test_voice_turn_json(service: Service, speech_wav: bytes) -> None:
    r = _turn(service, speech_wav, response_format="json")
    assert r.status_code == 200, r.text
    body = r.json()
    assert "weather" in body["transcript"].lower()
    assert body["reply"].strip()
    assert _seconds(base64.b64decode(body["audio_base64"])) > 0.3
    assert body["timings"]["llm_ttft_ms"] <= body["timings"]["llm_total_ms"]


def test_eight_concurrent_voice_turns(server_service: Service, speech_wav: bytes) -> None:
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: _turn(server_service, speech_wav), range(8)))
    assert [r.status_code for r in results] == [200] * 8
    for r in results:
        assert "weather" in unquote(r.headers["x-transcript"]).lower()
        assert _seconds(r.content) > 0.3


def test_stage_metrics_exported(server_service: Service, speech_wav: bytes) -> None:
    assert _turn(server_service, speech_wav).status_code == 200
    with server_service.client() as c:
        text = c.get("/metrics").text
    for stage in ("stt", "llm_ttft", "llm_total", "tts", "voice_total"):
        assert f'voicefleet_stage_seconds_count{{stage="{stage}"}}' in text
    count = [
        line for line in text.splitlines()
        if line.startswith('voicefleet_requests_total{route="/v1/voice",status="200"}')
    ]  # fmt: skip
    assert count and float(count[0].split()[-1]) >= 1
    assert "voicefleet_llm_completion_tokens_total" in text
