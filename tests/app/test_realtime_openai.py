"""/v1/realtime with the official `openai` SDK's realtime client (GA and beta), the real
small models and a real llama-server: spoken and typed turns, barge-in with truncation,
bad events. Every server event is validated against the SDK's own pydantic types."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import time
import wave
from typing import Any

import numpy as np
import pytest
from openai import AsyncOpenAI
from openai.types.beta.realtime.realtime_server_event import (
    RealtimeServerEvent as BetaServerEvent,
)
from openai.types.realtime.realtime_server_event import RealtimeServerEvent
from pydantic import TypeAdapter
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from app.bench.pcm import PCM, silence, trim_silence, wav_pcm
from tests.app.conftest import API_KEY, Service

pytestmark = pytest.mark.slow

GA_EVENTS: TypeAdapter[Any] = TypeAdapter(RealtimeServerEvent)
BETA_EVENTS: TypeAdapter[Any] = TypeAdapter(BetaServerEvent)
RATE = 24000


def _client(svc: Service, key: str = API_KEY) -> AsyncOpenAI:
    ws = svc.url.replace("http://", "ws://")
    return AsyncOpenAI(api_key=key, base_url=svc.url + "/v1", websocket_base_url=ws + "/v1")


def _to_24k(pcm: PCM, rate: int) -> PCM:
    n = int(len(pcm) * RATE / rate)
    x = np.interp(np.arange(n) * rate / RATE, np.arange(len(pcm)), pcm.astype(np.float64))
    return x.astype(np.int16)


def _speech(svc: Service, text: str) -> PCM:
    with svc.client() as c:
        r = c.post(
            "/v1/audio/speech", json={"model": "piper", "input": text, "response_format": "wav"}
        )
        r.raise_for_status()
    pcm, rate = wav_pcm(r.content)
    return _to_24k(trim_silence(pcm, rate), rate)


class Conversation:
    """An SDK connection plus a reader that validates and records every server event."""

    def __init__(self, conn: Any, beta: bool) -> None:
        self.conn = conn
        self.types = BETA_EVENTS if beta else GA_EVENTS
        self.events: list[tuple[float, dict[str, Any]]] = []
        self._arrived = asyncio.Event()
        self.failure: Exception | None = None
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            while True:
                raw = json.loads(await self.conn.recv_bytes())
                self.events.append((time.perf_counter(), raw))
                self.types.validate_python(raw)  # the SDK's own model of that event
                self._arrived.set()
        except Exception as exc:  # the connection closed, or an event the SDK cannot model
            self.failure = exc
            self._arrived.set()

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for _, e in self.events if e["type"] == kind]

    async def wait(self, kind: str, count: int = 1, timeout_s: float = 90) -> dict[str, Any]:
        deadline = time.perf_counter() + timeout_s
        while len(self.of(kind)) < count:
            assert not self.reader.done(), f"waiting for {kind}: {self.failure!r}"
            left = deadline - time.perf_counter()
            assert left > 0, f"no {kind} (x{count}) within {timeout_s} s"
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)
        return self.of(kind)[count - 1]

    async def speak(self, pcm: PCM, before: float = 0.3, after: float = 1.2) -> None:
        """Send at real-time pace, 20 ms per append."""
        audio = np.concatenate([silence(RATE, before), pcm, silence(RATE, after)])
        step = RATE // 50
        start = time.perf_counter()
        for i in range(0, len(audio), step):
            chunk = base64.b64encode(audio[i : i + step].astype("<i2").tobytes()).decode()
            await self.conn.input_audio_buffer.append(audio=chunk)
            delay = start + (i + step) / RATE - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)


def _transcribe(svc: Service, pcm: bytes) -> str:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(RATE)
        w.writeframes(pcm)
    with svc.client() as c:
        r = c.post("/v1/audio/transcriptions", files={"file": ("a.wav", buf.getvalue())},
                   data={"model": svc.settings.stt.model_name})  # fmt: skip
        r.raise_for_status()
    return str(r.json()["text"])


def _words(text: str) -> set[str]:
    return {w.strip(".,!?;:'\"").lower() for w in text.split() if len(w.strip(".,!?;:'\"")) > 3}


def _audio(conv: Conversation, response_id: str, kind: str) -> bytes:
    return b"".join(base64.b64decode(e["delta"]) for e in conv.of(kind)
                    if e["response_id"] == response_id)  # fmt: skip


async def test_spoken_multi_turn_conversation_with_the_sdk(
    server_service: Service, speech_wav: bytes
) -> None:
    pcm, rate = wav_pcm(speech_wav)
    question = _to_24k(trim_silence(pcm, rate), rate)
    follow_up = _speech(server_service, "And what about the evening?")
    async with _client(server_service).realtime.connect(model="voicefleet") as conn:
        conv = Conversation(conn, beta=False)
        created = await conv.wait("session.created")
        assert created["session"]["audio"]["output"]["format"]["rate"] == RATE
        await conn.session.update(session={"type": "realtime", "max_output_tokens": 48})
        await conv.wait("session.updated")
        await conv.speak(question)
        done1 = await conv.wait("response.done")
        await conv.speak(follow_up)
        done2 = await conv.wait("response.done", count=2)
    kinds = [e["type"] for _, e in conv.events]
    order = [kinds.index(f"input_audio_buffer.{k}") for k in ("speech_started", "speech_stopped",
                                                              "committed")]  # fmt: skip
    assert order == sorted(order)
    transcripts = conv.of("conversation.item.input_audio_transcription.completed")
    assert "weather" in transcripts[0]["transcript"].lower()
    assert "evening" in transcripts[1]["transcript"].lower()
    # each transcript streamed before it completes (as whisper-1 does: one delta, all of it)
    streamed = conv.of("conversation.item.input_audio_transcription.delta")
    for completed in transcripts:
        at = next(i for i, (_, e) in enumerate(conv.events) if e is completed)
        before = [e for _, e in conv.events[:at] if e in streamed
                  and e["item_id"] == completed["item_id"]]  # fmt: skip
        assert "".join(d["delta"] for d in before) == completed["transcript"]
        assert len(before) == sum(d["item_id"] == completed["item_id"] for d in streamed)
    for done in (done1, done2):
        response = done["response"]
        assert response["status"] == "completed"
        assert response["usage"]["input_tokens"] > 0 and response["usage"]["output_tokens"] > 0
        # the unit's extension: the server's stage breakdown (an early transcript: 0 ms)
        timings = response["voicefleet_timings"]
        assert timings["stt_ms"] > 0
        assert 0 <= timings["vad_end_to_transcript_ms"] < timings["vad_end_to_first_audio_ms"]
    # the second turn's prompt holds the first turn
    assert done2["response"]["usage"]["input_tokens"] > done1["response"]["usage"]["input_tokens"]
    # the audio is speech saying the reply: its transcription shares words with the text
    rid = done1["response"]["id"]
    reply_text = next(e["transcript"] for e in conv.of("response.output_audio_transcript.done")
                      if e["response_id"] == rid)  # fmt: skip
    audio = _audio(conv, rid, "response.output_audio.delta")
    assert len(audio) / 2 / RATE > 0.5
    heard = _transcribe(server_service, audio)
    print(f"\nreply: {reply_text!r}\nits audio transcribed: {heard!r}")
    assert _words(heard) & _words(reply_text), (heard, reply_text)
    deltas = "".join(e["delta"] for e in conv.of("response.output_audio_transcript.delta")
                     if e["response_id"] == rid)  # fmt: skip
    assert deltas == reply_text


def _metric(svc: Service, name: str, **labels: str) -> float:
    return svc.state.metrics.registry.get_sample_value(name, labels) or 0.0


async def test_text_turn_with_beta_event_names(server_service: Service) -> None:
    turns = "voicefleet_realtime_turns_total"
    before = {o: _metric(server_service, turns, outcome=o) for o in ("done", "interrupted",
                                                                      "cancelled")}  # fmt: skip
    sessions = _metric(server_service, "voicefleet_realtime_sessions")
    async with _client(server_service).beta.realtime.connect(model="voicefleet") as conn:
        conv = Conversation(conn, beta=True)
        await conv.wait("session.created")
        await conn.session.update(session={"turn_detection": None, "modalities": ["text"],
                                           "max_response_output_tokens": 32})  # fmt: skip
        updated = await conv.wait("session.updated")
        assert updated["session"]["turn_detection"] is None
        await conn.conversation.item.create(item={"type": "message", "role": "user",
            "content": [{"type": "input_text", "text": "Name three colours."}]})  # fmt: skip
        await conv.wait("conversation.item.created")
        await conn.response.create()
        done = await conv.wait("response.done")
    text = "".join(e["delta"] for e in conv.of("response.text.delta"))
    assert text.strip()
    assert done["response"]["output"][0]["content"][0]["text"] == text
    assert done["response"]["usage"]["output_tokens"] > 0
    assert not conv.of("response.audio.delta")
    # the session's end does not recount the finished turn (it was counted once, as done)
    for _ in range(100):
        if _metric(server_service, "voicefleet_realtime_sessions") <= sessions:
            break
        await asyncio.sleep(0.05)
    after = {o: _metric(server_service, turns, outcome=o) for o in before}
    assert after == {**before, "done": before["done"] + 1}, (before, after)


async def test_barge_in_keeps_only_the_heard_part(
    server_service: Service, speech_wav: bytes
) -> None:
    story = _speech(server_service, "Tell me a long story about a dragon.")
    interrupt = _speech(server_service, "Stop. What is the capital of France?")
    pcm, rate = wav_pcm(speech_wav)
    question = _to_24k(trim_silence(pcm, rate), rate)
    async with _client(server_service).realtime.connect(model="voicefleet") as conn:
        conv = Conversation(conn, beta=False)
        await conv.wait("session.created")
        # a long turn 1 makes the cut plain (the model's length is its own choice otherwise)
        long = "You tell stories. Every answer is a story of at least five long sentences."
        await conn.session.update(session={"type": "realtime", "max_output_tokens": 100,
                                           "instructions": long})  # fmt: skip
        await conv.wait("session.updated")
        await conv.speak(story, after=0.8)
        # turn 1 is generated in full (usage known); its audio plays for many seconds
        done1 = (await conv.wait("response.done", timeout_s=180))["response"]
        item1 = done1["output"][0]["id"]
        # 0.8 s into the playback the user talks over it; the client says what it played
        speaking = asyncio.create_task(conv.speak(interrupt, before=0.0))
        await conv.wait("input_audio_buffer.speech_started", count=2)
        await conn.conversation.item.truncate(item_id=item1, content_index=0, audio_end_ms=800)
        await conv.wait("conversation.item.truncated")
        await speaking
        done2 = (await conv.wait("response.done", count=2, timeout_s=180))["response"]
        await conn.conversation.item.retrieve(item_id=item1)
        kept = (await conv.wait("conversation.item.retrieved"))["item"]
        # turn 3 (typed, so nothing holds its events back) is talked over while it is being
        # generated; the model picks its length: a try where it was done before the VAD could
        # hear the user shows nothing and is made again (at most 3; never passes without one)
        done3, done4, t_done3 = await _talk_over_a_typed_turn(conv, question, tries=3)
    full = done1["output"][0]["content"][0]["transcript"]
    heard = kept["content"][0]["transcript"]
    assert full.startswith(heard) and len(heard) < len(full)
    p1, c1 = done1["usage"]["input_tokens"], done1["usage"]["output_tokens"]
    p2 = done2["usage"]["input_tokens"]
    print(f"\nturn 1: prompt {p1} tokens, reply {c1} tokens, heard at 800 ms: {heard!r}; "
          f"turn 2 prompt {p2} tokens = turn 1's + {p2 - p1} (the heard part, the new "
          f"request); with the whole reply it would be turn 1's + more than {c1}")  # fmt: skip
    # generated in full: up to its end, or to max_output_tokens ("incomplete")
    assert done1["status"] in ("completed", "incomplete") and c1 > 30
    assert p2 - p1 < c1  # the history holds the heard part, not the whole reply
    assert done3["status"] == "cancelled"
    assert done3["status_details"]["reason"] == "turn_detected"
    # nothing of turn 3 after its one terminal event
    assert not [e for t, e in conv.events if t > t_done3 and e.get("response_id") == done3["id"]]
    assert done4["status"] in ("completed", "incomplete")


async def _talk_over_a_typed_turn(
    conv: Conversation, question: PCM, tries: int
) -> tuple[dict[str, Any], dict[str, Any], float]:
    """A typed request, and at once the user speaks over it. Returns the typed turn's
    response.done (to be cancelled: speech was heard while it was generated), the spoken
    turn's, and when the first arrived."""
    for attempt in range(1, tries + 1):
        n_done = len(conv.of("response.done"))
        n_speech = len(conv.of("input_audio_buffer.speech_started"))
        story = {"type": "input_text", "text": "Tell me a long story about a cat."}
        await conv.conn.conversation.item.create(item={"type": "message", "role": "user",
                                                       "content": [story]})  # fmt: skip
        await conv.conn.response.create(response={"max_output_tokens": 1024})
        await conv.speak(question, before=0.0)
        typed = (await conv.wait("response.done", count=n_done + 1, timeout_s=120))["response"]
        spoken = (await conv.wait("response.done", count=n_done + 2, timeout_s=180))["response"]
        t_typed = next(t for t, e in conv.events if e["type"] == "response.done"
                       and e["response"]["id"] == typed["id"])  # fmt: skip
        heard = [t for t, e in conv.events if e["type"] == "input_audio_buffer.speech_started"]
        assert len(heard) > n_speech, "the user's speech was not heard"
        if typed["status"] == "cancelled" or heard[n_speech] < t_typed:
            return typed, spoken, t_typed  # speech came during the reply: it must be cancelled
        tokens = (typed.get("usage") or {}).get("output_tokens")
        print(
            f"try {attempt}: the typed turn's {tokens}-token reply was done before the "
            "user's speech was heard; again"
        )
    raise AssertionError(f"in {tries} tries no speech was heard while a reply was generated")


WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather forecast for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]},
}  # fmt: skip


async def test_function_call_round_trip(server_service: Service) -> None:
    """The tiny model may not pick a tool by itself: the call is forced by tool_choice (the
    engine's grammar), then the tool's output goes back and the model answers in text."""
    async with _client(server_service).realtime.connect(model="voicefleet") as conn:
        conv = Conversation(conn, beta=False)
        await conv.wait("session.created")
        await conn.session.update(session={
            "type": "realtime", "output_modalities": ["text"], "max_output_tokens": 48,
            "tools": [WEATHER_TOOL], "tool_choice": {"type": "function", "name": "get_weather"},
            "audio": {"input": {"turn_detection": None}},
        })  # fmt: skip
        updated = (await conv.wait("session.updated"))["session"]
        assert updated["tools"][0]["name"] == "get_weather"
        ask = {"type": "input_text", "text": "What is the weather in Paris?"}
        await conn.conversation.item.create(item={"type": "message", "role": "user",
                                                  "content": [ask]})  # fmt: skip
        await conn.response.create()
        done1 = (await conv.wait("response.done"))["response"]
        args_done = await conv.wait("response.function_call_arguments.done")
        call = done1["output"][-1]
        assert call["type"] == "function_call" and call["name"] == "get_weather"
        assert args_done["call_id"] == call["call_id"] and args_done["name"] == "get_weather"
        deltas = "".join(e["delta"] for e in conv.of("response.function_call_arguments.delta"))
        assert deltas == args_done["arguments"] == call["arguments"]
        assert isinstance(json.loads(call["arguments"])["city"], str)
        # the client runs the function and hands its result back
        await conn.session.update(session={"type": "realtime", "tool_choice": "none"})
        await conv.wait("session.updated", count=2)
        output = json.dumps({"forecast": "sunny, 21 C"})
        await conn.conversation.item.create(item={"type": "function_call_output",
                                                  "call_id": call["call_id"],
                                                  "output": output})  # fmt: skip
        await conv.wait("conversation.item.done", count=3)
        await conn.response.create()
        done2 = (await conv.wait("response.done", count=2))["response"]
    text = done2["output"][0]["content"][0]["text"]
    assert done2["status"] in ("completed", "incomplete") and text.strip()
    assert done2["output"][0]["type"] == "message"
    # the second prompt holds the call and its output
    assert done2["usage"]["input_tokens"] > done1["usage"]["input_tokens"]


async def test_bad_events_get_errors_and_the_session_goes_on(server_service: Service) -> None:
    async with _client(server_service).realtime.connect(model="voicefleet") as conn:
        conv = Conversation(conn, beta=False)
        await conv.wait("session.created")
        await conn.send_raw("not json")
        await conn.send_raw(json.dumps({"type": "no.such.event", "event_id": "e1"}))
        await conn.send_raw(json.dumps({"type": "input_audio_buffer.append", "audio": "%%"}))
        await conn.session.update(session={"type": "realtime", "audio": {"input": {
            "format": {"type": "audio/pcm", "rate": 7000}}}})  # fmt: skip
        await conn.send_raw(
            json.dumps({"type": "session.update", "session": {"type": "realtime", "voicemail": 1}})
        )
        await conn.send_raw(json.dumps({"type": "conversation.item.delete"}))
        errors = [(await conv.wait("error", count=i + 1))["error"] for i in range(6)]
        await conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
        await conv.wait("session.updated")  # still serving
    assert errors[0]["code"] == "invalid_json"
    assert errors[1]["code"] == "invalid_event_type" and errors[1]["event_id"] == "e1"
    assert errors[2]["param"] == "audio"
    assert errors[3]["param"] == "session.audio.input.format.rate"
    assert errors[4]["param"] == "session.voicemail"
    assert errors[5]["param"] == "item_id"


async def test_a_too_long_frame_is_refused_and_closes(server_service: Service) -> None:
    limit = server_service.settings.realtime.max_frame_bytes
    audio = base64.b64encode(b"\0" * limit).decode()  # 4/3 of the limit once encoded
    async with _client(server_service).realtime.connect(model="voicefleet") as conn:
        conv = Conversation(conn, beta=False)
        await conv.wait("session.created")
        await conn.input_audio_buffer.append(audio=audio)
        error = (await conv.wait("error"))["error"]
        await asyncio.wait_for(conv.reader, 10)
    assert error["code"] == "frame_too_large" and str(limit) in error["message"]
    failure = conv.failure
    assert isinstance(failure, ConnectionClosed) and failure.rcvd is not None
    assert failure.rcvd.code == 1009


async def test_auth_before_accept_and_the_browser_subprotocol(server_service: Service) -> None:
    url = server_service.url.replace("http://", "ws://") + "/v1/realtime?model=x"
    with pytest.raises(InvalidStatus) as info:
        async with connect(url, additional_headers={"Authorization": "Bearer nope"}):
            pass
    assert info.value.response.status_code == 401
    protocols = ["realtime", f"openai-insecure-api-key.{API_KEY}"]
    async with connect(url, subprotocols=protocols) as ws:  # type: ignore[arg-type]
        assert ws.subprotocol == "realtime"
        assert json.loads(await ws.recv())["type"] == "session.created"
