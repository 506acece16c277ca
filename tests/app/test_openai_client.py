"""The unmodified official `openai` client against the service."""

from __future__ import annotations

import io
import wave

import openai
import pytest

from tests.app.conftest import LLM_NAME, SPOKEN, Service
from tests.conftest import API_KEY


def _client(svc: Service) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{svc.url}/v1", api_key=API_KEY, max_retries=0)


def test_chat_non_stream(service: Service) -> None:
    reply = _client(service).chat.completions.create(
        model=LLM_NAME, messages=[{"role": "user", "content": "Say hello."}], max_tokens=12
    )
    assert reply.choices[0].message.content
    assert reply.usage is not None and reply.usage.completion_tokens > 0


def test_chat_stream(service: Service) -> None:
    stream = _client(service).chat.completions.create(
        model=LLM_NAME,
        messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=12,
        stream=True,
    )
    parts = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert len(parts) > 1
    assert "".join(parts).strip()


def test_speech_then_transcription_round_trip(server_service: Service) -> None:
    client = _client(server_service)
    audio = client.audio.speech.create(
        model="piper", voice="alloy", input=SPOKEN, response_format="wav"
    ).content
    with wave.open(io.BytesIO(audio)) as w:
        assert w.getnchannels() == 1
        # a streamed WAV: its header says "until the end" (0xFFFFFFFF), the frames are there
        seconds = len(w.readframes(w.getnframes())) / 2 / w.getframerate()
    assert 1.0 < seconds < 10.0
    text = client.audio.transcriptions.create(
        model="whisper-tiny.en", file=("speech.wav", audio, "audio/wav")
    ).text.lower()
    for word in ("weather", "tomorrow", "morning"):
        assert word in text, text


def test_models_listed(server_service: Service) -> None:
    ids = {m.id for m in _client(server_service).models.list()}
    assert {LLM_NAME, "whisper-tiny.en", "piper"} <= ids


def test_unknown_model_is_not_found(server_service: Service) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        _client(server_service).chat.completions.create(
            model="gpt-9", messages=[{"role": "user", "content": "hi"}]
        )
    assert err.value.code == "model_not_found"
