"""What a user hears in a realtime turn, measured from the client: end of speech -> first
reply audio for one question, N sessions asking at once, and a request with a pause inside
it (it must be answered once), and a barge-in over a long reply. Audio goes at real-time pace,
so turn detection is included.
Through the OpenAI Realtime API (/v1/realtime, openai_client.py); the server's stage
breakdown comes with each `response.done` (`response.voicefleet_timings`, docs/realtime.md).
Used by `bench/realtime_paths.py` (before/after in one run) and the bench gate."""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

from app.bench.openai_client import OpenAIRealtimeClient
from app.bench.pcm import PCM, silence, trim_silence, wav_pcm
from app.bench.voice import make_utterance
from app.bench.ws_client import Event

QUESTION = "What is the weather like in Paris today?"
# two sentences of one request, a breath between them
PAUSED = ("Please turn on the kitchen lights.", "And tell me what time it is.")
PAUSE_S = 0.34
# barge-in: a long reply is being spoken when the user speaks (the question above) over it
STORY = "Tell me a long story about a dragon."
LONG = "You tell stories. Every answer is a story of at least five long sentences."
STAGES = (
    "stt_ms", "vad_end_to_transcript_ms", "vad_end_to_llm_first_token_ms",
    "vad_end_to_first_audio_ms", "last_voiced_to_first_audio_ms",
)  # fmt: skip


@dataclass
class Speech:
    question: PCM
    paused: PCM
    rate: int
    story: PCM


async def speech(url: str, api_key: str | None) -> Speech:
    """The utterances, spoken by the unit's own TTS."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as c:
        question, rate = wav_pcm(await make_utterance(c, QUESTION))
        first, _ = wav_pcm(await make_utterance(c, PAUSED[0]))
        second, _ = wav_pcm(await make_utterance(c, PAUSED[1]))
        story, _ = wav_pcm(await make_utterance(c, STORY))
    paused = np.concatenate([trim_silence(first, rate), silence(rate, PAUSE_S),
                             trim_silence(second, rate)])  # fmt: skip
    return Speech(trim_silence(question, rate), paused, rate, trim_silence(story, rate))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))], 1)


async def answer(rt: OpenAIRealtimeClient, timeout_s: float = 120) -> Event:
    """The first `response.done` of a response that was not cancelled."""
    count = 1
    while True:
        done = await rt.wait_for("response.done", count=count, timeout_s=timeout_s)
        if done.data["response"]["status"] != "cancelled":
            return done
        count += 1


def _status(rt: OpenAIRealtimeClient, cancelled: bool) -> int:
    return sum((e.data["response"]["status"] == "cancelled") == cancelled
               for e in rt.of("response.done"))  # fmt: skip


async def one_turn(
    url: str, api_key: str | None, pcm: PCM, rate: int, max_tokens: int, linger: bool = True
) -> dict[str, Any]:
    """Speak `pcm` once; first audio from the last voiced frame, and what the turn gave.
    `linger`: stay 1.6 s after the answer, so that a second answer would show (the gate's
    turns, which count first audio only, leave at once). (The session's default temperature:
    a GA session has no temperature field.)"""
    rt = await OpenAIRealtimeClient.open(url, api_key, {"max_output_tokens": max_tokens})
    try:
        audio = np.concatenate([silence(rate, 0.3), pcm, silence(rate, 1.2)])
        t_voiced = await rt.send_audio(audio, rate, pace=1.0)
        first = await rt.wait_for("response.output_audio.delta", timeout_s=120)
        timings = (await answer(rt)).data["response"]["voicefleet_timings"]
        if linger:
            await rt.send_audio(silence(rate, 0.8), rate, pace=0)  # a second answer shows now
            await asyncio.sleep(0.8)
    finally:
        await rt.close()
    transcribed = "conversation.item.input_audio_transcription.completed"
    return {
        "first_audio_ms": round((first.t - t_voiced) * 1000, 1),
        "transcripts": [e.data["transcript"] for e in rt.of(transcribed)],
        "answers": _status(rt, cancelled=False),
        "cancelled": _status(rt, cancelled=True),
        "errors": [e.data for e in rt.of("error")],
        "server": timings,
    }


async def barge_in(url: str, api_key: str | None, sp: Speech) -> dict[str, Any]:
    """A long reply is being spoken; the user starts speaking over it. Reaction: the first voiced
    frame sent -> the reply stopped: its `response.done` with status `cancelled`
    (`turn_detected`) while it is still generated, or, when it was generated in full before the
    user spoke (its audio still playing on the client), `input_audio_buffer.speech_started`,
    at which the client stops playback (docs/realtime.md, *The rules*). None (missed): neither
    came, or the reply was finished after the user's speech was heard."""
    rt = await OpenAIRealtimeClient.open(url, api_key, {"max_output_tokens": 200,
                                                       "instructions": LONG})  # fmt: skip
    try:
        story = np.concatenate([silence(sp.rate, 0.3), sp.story, silence(sp.rate, 1.0)])
        await rt.send_audio(story, sp.rate, pace=0)  # not measured: as fast as it goes
        first = await rt.wait_for("response.output_audio.delta", timeout_s=120)
        reply = first.data["response_id"]
        spoke = len(rt.of("input_audio_buffer.speech_started"))
        t_speech = time.perf_counter()  # sp.question is trimmed: its first frame is voiced
        talk = asyncio.create_task(rt.send_audio(sp.question, sp.rate, pace=1.0))
        heard: Event | None = None
        done: Event | None = None
        try:
            heard = await rt.wait_for("input_audio_buffer.speech_started", count=spoke + 1,
                                      timeout_s=30)  # fmt: skip
            done = await _done_of(rt, reply)
        except TimeoutError:
            pass
        await talk
    finally:
        await rt.close()
    reaction, how = None, "missed"
    if heard is not None and done is not None:
        status = done.data["response"]["status"]
        if status == "cancelled":
            reaction, how = done.t - t_speech, "cancelled"
        elif done.t < heard.t:  # generated in full before the user spoke: playback stops
            reaction, how = heard.t - t_speech, "playback_stopped"
    return {"reaction_ms": None if reaction is None else round(reaction * 1000, 1), "how": how,
            "errors": [e.data for e in rt.of("error")]}  # fmt: skip


async def _done_of(rt: OpenAIRealtimeClient, response_id: str) -> Event:
    """The `response.done` of that response."""
    count = 1
    while True:
        done = await rt.wait_for("response.done", count=count, timeout_s=120)
        if done.data["response"]["id"] == response_id:
            return done
        count += 1


def summarise_barge_in(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    ms = [r["reaction_ms"] for r in rounds if r["reaction_ms"] is not None]
    return {
        "rounds": len(rounds),
        "reaction_ms": ms,
        "how": [r["how"] for r in rounds],
        "missed": sum(r["reaction_ms"] is None for r in rounds),
        "reaction_p50_ms": round(statistics.median(ms), 1) if ms else None,
        "reaction_p95_ms": percentile(ms, 0.95) if ms else None,
    }


def summarise(turns: list[dict[str, Any]]) -> dict[str, Any]:
    ms = [t["first_audio_ms"] for t in turns]
    return {
        "first_audio_ms": ms,
        "first_audio_p50_ms": round(statistics.median(ms), 1) if ms else 0.0,
        "first_audio_p95_ms": percentile(ms, 0.95),
        "server_p50": {
            k: round(statistics.median(t["server"][k] for t in turns), 1) for k in STAGES
        },
        "early_transcripts": sum(bool(t["server"].get("early_transcript")) for t in turns),
        "transcript": turns[0]["transcripts"][-1] if turns and turns[0]["transcripts"] else "",
    }


def answered_once(turn: dict[str, Any]) -> bool:
    """One request, one answer: one transcript holding both sentences, nothing cancelled."""
    text = " ".join(turn["transcripts"]).lower()
    return (len(turn["transcripts"]) == 1 and turn["answers"] == 1 and not turn["cancelled"]
            and "kitchen" in text and "time" in text)  # fmt: skip


async def concurrent(
    url: str, api_key: str | None, sp: Speech, sessions: int, max_tokens: int
) -> tuple[list[dict[str, Any]], list[str]]:
    """`sessions` sessions ask the question at once; their turns and the errors."""
    results = await asyncio.gather(
        *(
            one_turn(url, api_key, sp.question, sp.rate, max_tokens, linger=False)
            for _ in range(sessions)
        ),
        return_exceptions=True,
    )
    turns = [r for r in results if isinstance(r, dict)]
    errors = [repr(r) for r in results if isinstance(r, BaseException)]
    errors += [str(e) for t in turns for e in t["errors"]]
    return turns, errors
