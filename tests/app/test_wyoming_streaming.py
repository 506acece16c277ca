"""Streamed Wyoming replies with the wyoming package's own client against a real service (real
llama-server, whisper, piper): handled-start / handled-chunk / handled / handled-stop as the LLM
writes, transcript-start / transcript-chunk / transcript / transcript-stop, both where the
request asks (wyoming.streaming: request) and for every request (always); old-style clients
keep getting the one event they read today."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from wyoming.asr import Transcribe, Transcript, TranscriptChunk, TranscriptStart, TranscriptStop
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.event import Event
from wyoming.handle import Handled, HandledChunk, HandledStart, HandledStop, NotHandled
from wyoming.info import Describe, Info

from app.settings import Settings
from tests.app.conftest import make_settings, run_service, server_engines
from tests.conftest import LlamaServer, ModelPaths, free_port

pytestmark = pytest.mark.slow

# a reply long enough to be cut into several pieces (sentences) by the chunker
THREE_SENTENCES = "Describe the moon in three short sentences."
SPOKEN_COMMAND = "Turn on the kitchen lights and close the garage door."
# how long a client waits to be sure nothing more comes
QUIET_S = 0.5


def _unit(settings: Settings, stt_tts: tuple[Any, Any]) -> Iterator[int]:
    service = run_service(settings, server_engines(stt_tts, settings))
    next(service)
    try:
        yield settings.wyoming.port
    finally:
        service.close()


def _settings(model_paths: ModelPaths, llama: LlamaServer, streaming: str) -> Settings:
    return make_settings(
        model_paths, "server", llama,
        wyoming={"enabled": True, "port": free_port(), "max_tokens": 96, "streaming": streaming,
                 "temperature": 0.0},
    )  # fmt: skip


@pytest.fixture(scope="module")
def on_request(
    model_paths: ModelPaths, stt_tts: tuple[Any, Any], llama_server: LlamaServer
) -> Iterator[int]:
    yield from _unit(_settings(model_paths, llama_server, "request"), stt_tts)


@pytest.fixture(scope="module")
def always(
    model_paths: ModelPaths, stt_tts: tuple[Any, Any], llama_server: LlamaServer
) -> Iterator[int]:
    yield from _unit(_settings(model_paths, llama_server, "always"), stt_tts)


def _client(port: int) -> AsyncTcpClient:
    return AsyncTcpClient("127.0.0.1", port, connect_timeout=5, read_timeout=120)


async def _read(client: AsyncTcpClient) -> Event:
    event = await client.read_event()
    assert event is not None, "the server closed the connection"
    return event


async def _nothing_more(client: AsyncTcpClient) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(client.read_event(), QUIET_S)


async def _describe(port: int) -> Info:
    async with _client(port) as client:
        await client.write_event(Describe().event())
        return Info.from_event(await _read(client))


async def _events_until(client: AsyncTcpClient, last: str) -> list[tuple[float, Event]]:
    """(arrival time, event) up to the event of type `last`."""
    events = []
    while True:
        event = await _read(client)
        events.append((time.perf_counter(), event))
        if event.type == last:
            return events


@pytest.fixture(scope="module")
def spoken(on_request: int) -> bytes:
    """A 16 kHz utterance, spoken by the unit's own piper over Wyoming."""
    from app.bench.wyoming import synthesize, to_stt_rate

    speech = asyncio.run(synthesize(f"tcp://127.0.0.1:{on_request}", SPOKEN_COMMAND))
    return to_stt_rate(speech.pcm, speech.rate)


async def _send_audio(client: AsyncTcpClient, pcm: bytes) -> None:
    await client.write_event(AudioStart(rate=16000, width=2, channels=1).event())
    for offset in range(0, len(pcm), 2048):
        chunk = AudioChunk(rate=16000, width=2, channels=1, audio=pcm[offset : offset + 2048])
        await client.write_event(chunk.event())
    await client.write_event(AudioStop().event())


# -- describe -------------------------------------------------------------------------------


async def test_describe_says_the_replies_stream(on_request: int) -> None:
    info = await _describe(on_request)
    assert info.handle[0].supports_handled_streaming
    assert info.asr[0].supports_transcript_streaming


# -- handle ---------------------------------------------------------------------------------


def _check_stream(events: list[tuple[float, Event]], context: dict[str, Any]) -> list[str]:
    """The protocol's order; the chunks spell the reply; returns the chunks."""
    types = [e.type for _, e in events]
    assert types[0] == "handled-start" and types[-2:] == ["handled", "handled-stop"], types
    assert set(types[1:-2]) == {"handled-chunk"}, types
    assert HandledStop.is_type(events[-1][1].type)
    assert HandledStart.from_event(events[0][1]).context == context
    chunks = [HandledChunk.from_event(e).text for _, e in events[1:-2]]
    handled = Handled.from_event(events[-2][1])
    assert handled.context == context
    assert handled.text and "".join(chunks) == handled.text, (chunks, handled.text)
    return chunks


async def test_streamed_handle_sends_pieces_as_the_llm_writes(on_request: int) -> None:
    """Home Assistant's context plus the request for a stream: the first piece reaches the
    client well before the reply is complete (the whole stream is not sent at the end)."""
    context = {"conversation_id": "stream-1", "device_id": "kitchen", "streaming": True}
    async with _client(on_request) as client:
        sent = time.perf_counter()
        await client.write_event(Transcript(text=THREE_SENTENCES, context=context).event())
        events = await _events_until(client, "handled-stop")
        await _nothing_more(client)
    chunks = _check_stream(events, context)
    assert len(chunks) >= 2, chunks
    first_chunk = next(t for t, e in events if HandledChunk.is_type(e.type))
    stop = events[-1][0]
    # generating the rest took a good part of the whole: a reply buffered to the end would
    # deliver every event within a millisecond or so of the stop
    assert stop - first_chunk > 0.2 * (stop - sent), (first_chunk - sent, stop - sent)


async def test_old_style_handle_gets_only_handled(on_request: int) -> None:
    context = {"conversation_id": "plain-1"}
    async with _client(on_request) as client:
        await client.write_event(Transcript(text=THREE_SENTENCES, context=context).event())
        event = await _read(client)
        assert Handled.is_type(event.type), event
        handled = Handled.from_event(event)
        await _nothing_more(client)
    assert handled.context == context and handled.text


async def test_always_streams_and_home_assistants_loop_reads_the_reply(always: int) -> None:
    """wyoming.streaming: always — no flag in the context; Home Assistant's conversation
    agent reads events until `handled` (ignoring the others), so it gets the whole reply."""
    context = {"conversation_id": "always-1"}
    async with _client(always) as client:
        await client.write_event(Transcript(text=THREE_SENTENCES, context=context).event())
        events = await _events_until(client, "handled-stop")
    _check_stream(events, context)
    assert (await _describe(always)).handle[0].supports_handled_streaming


async def test_a_bad_streaming_flag_is_not_handled(on_request: int) -> None:
    async with _client(on_request) as client:
        await client.write_event(Transcript(text="Hi.", context={"streaming": "yes"}).event())
        event = await _read(client)
    assert NotHandled.is_type(event.type)
    assert "context.streaming must be true or false" in (NotHandled.from_event(event).text or "")


# -- asr ------------------------------------------------------------------------------------


async def test_streamed_transcript_when_asked(on_request: int, spoken: bytes) -> None:
    async with _client(on_request) as client:
        await client.write_event(Transcribe(language="en", context={"streaming": True}).event())
        await _send_audio(client, spoken)
        events = await _events_until(client, "transcript-stop")
        await _nothing_more(client)
    types = [e.type for _, e in events]
    assert types[0] == "transcript-start" and types[-2:] == ["transcript", "transcript-stop"]
    assert set(types[1:-2]) == {"transcript-chunk"} and len(types) >= 4, types
    assert TranscriptStart.from_event(events[0][1]).language == "en"
    chunks = [TranscriptChunk.from_event(e).text for _, e in events[1:-2]]
    text = Transcript.from_event(events[-2][1]).text
    assert "".join(chunks).strip() == text
    assert {"kitchen", "lights", "garage", "door"} <= {w.strip(".,").lower() for w in text.split()}
    assert TranscriptStop.is_type(events[-1][1].type)


async def test_old_style_transcribe_gets_only_the_transcript(
    on_request: int, spoken: bytes
) -> None:
    async with _client(on_request) as client:
        await client.write_event(Transcribe(language="en").event())
        await _send_audio(client, spoken)
        event = await _read(client)
        assert Transcript.is_type(event.type), event
        await _nothing_more(client)
    assert "kitchen" in Transcript.from_event(event).text.lower()
