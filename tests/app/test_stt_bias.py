"""Device-name biasing: whisper hears the home's device names better when told them (the
bench's figure, on the unit's own spoken commands), the names a Wyoming client sends
(transcribe.transcript_names / transcript_terms) reach whisper, and bad names are refused."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error

from app.bench.stt_bias import COMMANDS, run_bias_bench
from app.errors import APIError
from app.pipeline import bias_names
from app.state import ServiceState
from tests.app.conftest import make_settings, run_service, server_engines
from tests.conftest import LlamaServer, ModelPaths, free_port

pytestmark = pytest.mark.slow

NANOLEAF = "Dim the Nanoleaf panels in the study."


@pytest.fixture(scope="module")
def port(
    model_paths: ModelPaths, stt_tts: tuple[Any, Any], llama_server: LlamaServer
) -> Iterator[int]:
    settings = make_settings(
        model_paths, "server", llama_server, wyoming={"enabled": True, "port": free_port()}
    )
    service = run_service(settings, server_engines(stt_tts, settings))
    next(service)
    try:
        yield settings.wyoming.port
    finally:
        service.close()


@pytest.fixture(scope="module")
def nanoleaf(port: int) -> bytes:
    from app.bench.wyoming import synthesize, to_stt_rate

    speech = asyncio.run(synthesize(f"tcp://127.0.0.1:{port}", NANOLEAF))
    return to_stt_rate(speech.pcm, speech.rate)


async def _transcribe(port: int, pcm: bytes, request: Transcribe) -> Any:
    async with AsyncTcpClient("127.0.0.1", port, connect_timeout=5, read_timeout=60) as client:
        await client.write_event(request.event())
        await client.write_event(AudioStart(rate=16000, width=2, channels=1).event())
        for offset in range(0, len(pcm), 2048):
            chunk = AudioChunk(rate=16000, width=2, channels=1, audio=pcm[offset : offset + 2048])
            await client.write_event(chunk.event())
        await client.write_event(AudioStop().event())
        event = await client.read_event()
    assert event is not None
    if Error.is_type(event.type):
        return Error.from_event(event)
    return Transcript.from_event(event)


def test_biasing_hears_the_device_names_at_least_as_well(
    model_paths: ModelPaths, stt_tts: tuple[Any, Any]
) -> None:
    """The bench's measurement (the default mode against none) on names the small whisper
    mis-hears unbiased."""
    settings = make_settings(model_paths, "embedded")
    hard = [c for c in COMMANDS if c[1].split()[0] in {"Ecobee", "Nanoleaf", "Govee", "Velux"}]
    report = run_bias_bench(settings, hard, modes=("off", "hotwords"), tts=stt_tts[1])
    recall = {mode: m["name_word_recall"] for mode, m in report["summary"].items()}
    assert recall["hotwords"] >= recall["off"], recall
    assert len(report["utterances"]) == 4
    assert all(set(r["heard"]) == {"off", "hotwords"} for r in report["utterances"])


async def test_transcript_names_from_the_client_reach_whisper(port: int, nanoleaf: bytes) -> None:
    plain = await _transcribe(port, nanoleaf, Transcribe(language="en"))
    names = Transcribe(language="en", transcript_names=["Nanoleaf panels", "Ecobee thermostat"])
    biased = await _transcribe(port, nanoleaf, names)
    assert isinstance(plain, Transcript) and isinstance(biased, Transcript)
    # unbiased, whisper-tiny writes "nano leaf"; told the name, it writes it
    assert "nanoleaf" not in plain.text.lower(), plain.text
    assert "nanoleaf" in biased.text.lower(), biased.text


async def test_bad_names_are_refused(port: int, nanoleaf: bytes) -> None:
    wrong_type = Transcribe(language="en", transcript_terms="Nanoleaf")  # type: ignore[arg-type]
    error = await _transcribe(port, nanoleaf, wrong_type)
    assert isinstance(error, Error) and error.code == "bad_event"
    assert "transcript_terms must be a list of strings" in error.text
    too_many = Transcribe(language="en", transcript_names=[f"lamp number {i}" for i in range(60)])
    error = await _transcribe(port, nanoleaf, too_many)
    assert isinstance(error, Error) and error.code == "too_many_names"
    assert "stt.max_bias_chars" in error.text


def test_settings_names_come_first_each_once(model_paths: ModelPaths) -> None:
    settings = make_settings(model_paths, "embedded", stt={"bias_names": ["Hue  Bloom lamp"]})
    state = ServiceState(settings=settings)
    assert bias_names(state, ["hue bloom LAMP", "Velux skylight", " "]) == [
        "Hue Bloom lamp", "Velux skylight",
    ]  # fmt: skip
    with pytest.raises(APIError) as refused:
        bias_names(state, ["x" * 700])
    assert refused.value.code == "too_many_names"
