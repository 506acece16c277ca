"""Prefilling the llama-server slot while the user speaks (realtime.prefill_llm), against a
real llama-server: the engine's prefill, and realtime turns with it on and off."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import numpy as np
import pytest

from app.bench.followup import PASSAGE
from app.bench.pcm import PCM, silence, trim_silence, wav_pcm
from app.bench.rt_client import RealtimeClient
from app.engines.base import ChatMessage, ChatParams
from app.engines.llm_server import LlamaServerLLM
from app.realtime.prefill import Prefill
from app.state import Engines, ServiceState
from tests.app.conftest import API_KEY, Service, make_settings, run_service, server_engines
from tests.conftest import LLAMA_API_KEY, LlamaServer, ModelPaths

pytestmark = pytest.mark.slow

# a pause inside the request that is an early-STT pause (64 ms) but not an end of speech:
# these services wait 480 ms of silence for speech_stopped, so the pause never starts a
# speculative reply and the only work done during it is the early pass and the prefill
PAUSE_S = 0.25
TURNS = {"end_silence_ms": 480, "commit_silence_ms": 800}


@pytest.fixture(scope="module")
def services(
    model_paths: ModelPaths, stt_tts: tuple[Any, Any], llama_server: LlamaServer
) -> Iterator[dict[bool, Service]]:
    """The same service with prefill on and off, on the tests' llama-server."""
    out: dict[bool, Service] = {}
    running = []
    for on in (True, False):
        settings = make_settings(model_paths, "server", llama_server,
                                 realtime={**TURNS, "prefill_llm": on})  # fmt: skip
        gen = run_service(settings, server_engines(stt_tts, settings))
        out[on] = next(gen)
        running.append(gen)
    yield out
    for gen in running:
        gen.close()


def _speak(svc: Service, text: str) -> tuple[PCM, int]:
    with svc.client() as c:
        r = c.post(
            "/v1/audio/speech", json={"model": "piper", "input": text, "response_format": "wav"}
        )
        r.raise_for_status()
    pcm, rate = wav_pcm(r.content)
    return trim_silence(pcm, rate), rate


def _request(svc: Service) -> tuple[PCM, int]:
    """Two sentences of one request, a pause between them, silence around."""
    first, rate = _speak(svc, "Please turn on the kitchen lights.")
    second, _ = _speak(svc, "And tell me what time it is in London right now.")
    pcm = np.concatenate([silence(rate, 0.3), first, silence(rate, PAUSE_S), second,
                          silence(rate, 1.5)])  # fmt: skip
    return pcm, rate


async def _typed(rt: RealtimeClient, text: str, count: int) -> dict[str, Any]:
    """A typed turn, and the time its audio plays (speaking sooner would be a barge-in)."""
    await rt.send_event({"type": "input_text", "text": text})
    done = await rt.wait_for("response.done", count=count, timeout_s=120)
    timings = (await rt.wait_for("turn.timings", count=count, timeout_s=30)).data
    rate = rt.of("session.created")[0].data["output_sample_rate"]
    await asyncio.sleep(len(rt.audio[done.data["turn"]]) / 2 / rate + 0.2)
    return timings


async def _follow_up(svc: Service, opening: str) -> tuple[dict[str, Any], RealtimeClient]:
    """Turn 1 typed (a ~400-token history), turn 2 spoken with a pause inside; turn 2's
    timings."""
    pcm, rate = _request(svc)
    rt = await RealtimeClient.open(svc.url, API_KEY, sample_rate=rate, max_tokens=24)
    try:
        await _typed(rt, f"{opening} Read this: {PASSAGE} Summarise it.", 1)
        await rt.send_audio(pcm, rate, pace=1.0)
        await rt.wait_for("response.done", count=2, timeout_s=120)
        timings = (await rt.wait_for("turn.timings", count=2, timeout_s=30)).data
        await rt.send_audio(silence(rate, 1.0), rate, pace=0)  # a second answer would show
    finally:
        await rt.close()
    return timings, rt


def _evaluated(timings: dict[str, Any]) -> int:
    return int(timings["prompt_tokens"] - timings["prompt_cached_tokens"])


async def test_engine_prefill_fills_the_slot_and_the_request_reuses_it(
    model_paths: ModelPaths, llama_server: LlamaServer
) -> None:
    llm = LlamaServerLLM(make_settings(model_paths, "server", llama_server).llm)
    params = ChatParams(max_tokens=16, temperature=0.0, slot=5)
    history: list[ChatMessage] = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": f"Engine test. Read this: {PASSAGE} Summarise it."},
        {"role": "assistant", "content": "Bicycles changed how people lived and moved."},
    ]
    words = "Please turn on the kitchen lights"
    try:
        first = await llm.prefill([*history, {"role": "user", "content": words}], params)
        assert first is not None
        # a new history: the slot held none of it, the prefill evaluated (nearly) all of it
        assert first.prompt_tokens > 300 and first.evaluated > first.prompt_tokens - 10
        again = await llm.prefill([*history, {"role": "user", "content": words}], params)
        assert again is not None and again.evaluated <= 2  # all cached now
        said = f"{words} and tell me what time it is."
        chunks = [c async for c in llm.stream([*history, {"role": "user", "content": said}],
                                              params)]  # fmt: skip
    finally:
        await llm.aclose()
    last = chunks[-1]
    assert "".join(c.text for c in chunks).strip()  # the real request answers
    # only the last words (and the assistant header) were evaluated at the end
    assert last.cached_tokens >= first.prompt_tokens - 10
    assert last.prompt_tokens - last.cached_tokens < 20


async def test_a_reply_waits_for_the_prefill_and_words_offered_meanwhile_go_after_it(
    model_paths: ModelPaths, llama_server: LlamaServer
) -> None:
    """Prefill (the session's): an offer while one runs is sent after it (the newest only);
    settle() lets the one in flight end and hands over the counts; after close() nothing
    more is sent; a full LLM gate skips the prefill instead of queueing."""
    settings = make_settings(model_paths, "server", llama_server)
    state = ServiceState(settings=settings, engines=Engines(llm=LlamaServerLLM(settings.llm)))
    params = ChatParams(max_tokens=16, temperature=0.0, slot=6)
    system: ChatMessage = {"role": "system", "content": f"Prefill test. {PASSAGE}"}
    said = ["Please turn on", "Please turn on the kitchen", "Please turn on the kitchen lights"]
    prefill = Prefill(state)
    try:
        for words in said:  # the first runs; the second is replaced by the third
            prefill.offer([system, {"role": "user", "content": words}], params)
        assert prefill.running and prefill.task is not None
        await asyncio.wait({prefill.task})  # ends once the third is in too
        settled = await prefill.settle()
        assert settled.prefills == 2
        assert settled.tokens > 300  # the long system prompt, new to slot 6, then a few words
        assert (await prefill.settle()).prefills == 0  # counts are handed over once
        # a reply settling while one runs waits for it, and what was not sent yet is dropped
        prefill.offer([system, {"role": "user", "content": "Please turn off"}], params)
        prefill.offer([system, {"role": "user", "content": "Please turn off the oven"}], params)
        settled = await prefill.settle()
        assert not prefill.running and settled.prefills == 1
        async with AsyncExitStack() as replies:  # the gate is full: skipped, nothing queued
            for _ in range(settings.llm.parallel):
                await replies.enter_async_context(state.llm_gate.slot())
            prefill.offer([system, {"role": "user", "content": "Hello"}], params)
            assert (await prefill.settle()).prefills == 0
            assert state.llm_gate.waiting == 0
        prefill.close()
        prefill.offer([system, {"role": "user", "content": "Hello there"}], params)
        assert prefill.task is not None and not prefill.running
        assert (await prefill.settle()).prefills == 0
    finally:
        await state.require_engines().llm.aclose()


async def test_prefill_evaluates_the_words_while_the_user_speaks(
    services: dict[bool, Service],
) -> None:
    on, rt_on = await _follow_up(services[True], "Conversation with prefill.")
    off, rt_off = await _follow_up(services[False], "Conversation without prefill.")
    for rt in (rt_on, rt_off):  # one request, one answer, nothing cancelled
        transcripts = rt.of("transcript")
        assert len(transcripts) == 2, [e.data for e in transcripts]
        spoken = transcripts[1].data["text"].lower()
        assert "kitchen" in spoken and "london" in spoken
        assert len(rt.of("response.done")) == 2 and not rt.of("response.cancelled")
    assert on["prefills"] >= 1 and on["prefill_tokens"] > 0
    assert off["prefills"] == 0 and off["prefill_tokens"] == 0
    # both reuse the typed turn's ~400 tokens; with prefill the first sentence is cached too
    assert off["prompt_cached_tokens"] > 300
    assert on["prompt_cached_tokens"] > off["prompt_cached_tokens"]
    assert _evaluated(on) < _evaluated(off)


async def test_barge_in_then_a_prefilled_request(services: dict[bool, Service]) -> None:
    """The user talks over a long reply, with a pause in what they say: the reply is
    cancelled, the new request is prefilled from the history as heard, and answered."""
    svc = services[True]
    pcm, rate = _request(svc)
    rt = await RealtimeClient.open(svc.url, API_KEY, sample_rate=rate, max_tokens=200)
    try:
        await rt.send_event({"type": "input_text", "text": "Tell me a long story about a dragon."})
        first_audio = await rt.wait_for("response.audio", timeout_s=60)
        turn1 = first_audio.data["turn"]
        await rt.send_audio(pcm, rate, pace=1.0)
        cancelled = await rt.wait_for("response.cancelled", turn=turn1, timeout_s=30)
        transcript2 = await rt.wait_for("transcript", count=2, timeout_s=60)
        turn2 = transcript2.data["turn"]
        await rt.wait_for("response.done", turn=turn2, timeout_s=60)
        timings = (await rt.wait_for("turn.timings", turn=turn2, timeout_s=30)).data
    finally:
        await rt.close()
    assert cancelled.data["reason"] == "barge_in"
    assert "kitchen" in transcript2.data["text"].lower()
    assert timings["prefills"] >= 1 and timings["prompt_cached_tokens"] > 0
    assert not rt.of("response.done", turn=turn1)
    # nothing of the cancelled reply after its cancel, and the slot is free again
    assert rt.audio_after_cancel[turn1] == 0
    slot = rt.of("session.created")[0].data["slot"]
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {LLAMA_API_KEY}"}) as c:
        slots = (await c.get(f"{svc.settings.llm.server_url}/slots")).json()
    assert not next(s for s in slots if s["id"] == slot)["is_processing"]
