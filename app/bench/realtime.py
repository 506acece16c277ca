"""Realtime benchmarks (voicefleet bench --realtime...).

- first audio: the same utterance answered through the OpenAI Realtime API (/v1/realtime),
  through the first protocol (/v1/voicefleet/realtime: both run the same engine, so the
  difference is the protocol's cost) and by one-shot /v1/voice, interleaved round by round.
  Streamed is timed from the last voiced frame sent (audio fed at real-time pace, so turn
  detection is included) to the first audio message; one-shot from the request (the whole
  utterance is already there) to the answer (the answer *is* its first audio).
- history (OpenAI protocol, typed turns): turn-2 vs turn-1 first reply text time of N
  concurrent conversations whose turn 1 leaves a ~400-token history: with the slot kept per
  session and prompt caching, turn 2 prefills only its new tokens.
- soak (OpenAI protocol): N sessions talking for S seconds; errors and the service's peak RSS.
"""

from __future__ import annotations

import asyncio
import functools
import statistics
import time
from typing import Any

import httpx
import numpy as np

from app.bench import rt_turns
from app.bench.followup import FOLLOW_UP, PASSAGE
from app.bench.openai_client import OpenAIRealtimeClient
from app.bench.pcm import PCM, silence, trim_silence, wav_pcm
from app.bench.rt_client import RealtimeClient
from app.bench.voice import make_utterance

QUESTION = "Tell me about the history of the bicycle."
SERVER_STAGES = ("stt_ms", "llm_ttft_ms", "vad_end_to_transcript_ms",
                 "vad_end_to_llm_first_token_ms", "vad_end_to_first_audio_ms",
                 "last_voiced_to_first_audio_ms", "speculative_restarts")  # fmt: skip


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 1) if values else 0.0


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


async def _one_shot(c: httpx.AsyncClient, wav: bytes, max_tokens: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    r = await c.post(
        "/v1/voice",
        files={"file": ("q.wav", wav, "audio/wav")},
        data={"response_format": "json", "max_tokens": str(max_tokens), "temperature": "0"},
    )
    elapsed = (time.perf_counter() - t0) * 1000
    r.raise_for_status()
    body = r.json()
    return {"first_audio_ms": elapsed, "words": len(body["reply"].split()),
            "transcript": body["transcript"]}  # fmt: skip


async def _streamed(
    url: str, api_key: str | None, pcm: PCM, rate: int, max_tokens: int
) -> dict[str, Any]:
    # the default temperature, as the OpenAI arm (its GA session has no temperature field)
    rt = await RealtimeClient.open(url, api_key, rate, max_tokens=max_tokens)
    try:
        audio = np.concatenate([silence(rate, 0.3), pcm, silence(rate, 1.5)])
        t_voiced = await rt.send_audio(audio, rate, pace=1.0)
        first = await rt.wait_for("response.audio", timeout_s=120)
        done = await rt.wait_for("response.done", timeout_s=120)
        timings = (await rt.wait_for("turn.timings", timeout_s=30)).data
    finally:
        await rt.close()
    return {
        "first_audio_ms": (first.t - t_voiced) * 1000,
        "words": len(done.data["text"].split()),
        "transcript": rt.of("transcript")[0].data["text"],
        "server": timings,
    }


async def _openai(
    url: str, api_key: str | None, pcm: PCM, rate: int, max_tokens: int
) -> dict[str, Any]:
    rt = await OpenAIRealtimeClient.open(url, api_key, {"max_output_tokens": max_tokens})
    try:
        audio = np.concatenate([silence(rate, 0.3), pcm, silence(rate, 1.5)])
        t_voiced = await rt.send_audio(audio, rate, pace=1.0)
        first = await rt.wait_for("response.output_audio.delta", timeout_s=120)
        done = (await rt_turns.answer(rt)).data["response"]
    finally:
        await rt.close()
    return {"first_audio_ms": (first.t - t_voiced) * 1000,
            "prompt_tokens": done["usage"]["input_tokens"],
            "server": done["voicefleet_timings"]}  # fmt: skip


async def run_first_audio(
    url: str, api_key: str | None, rounds: int, max_tokens: int
) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, headers=_headers(api_key), timeout=300) as c:
        wav = await make_utterance(c, QUESTION)
        pcm, rate = wav_pcm(wav)
        pcm = trim_silence(pcm, rate)
        await _one_shot(c, wav, 8)  # warm-up
        oneshot, streamed, openai = [], [], []
        for i in range(rounds):
            oneshot.append(await _one_shot(c, wav, max_tokens))
            # the two protocols in alternating order, so a drift in load favours neither
            if i % 2:
                openai.append(await _openai(url, api_key, pcm, rate, max_tokens))
            streamed.append(await _streamed(url, api_key, pcm, rate, max_tokens))
            if not i % 2:
                openai.append(await _openai(url, api_key, pcm, rate, max_tokens))
    s_ms = [r["first_audio_ms"] for r in streamed]
    oa_ms = [r["first_audio_ms"] for r in openai]
    o_ms = [r["first_audio_ms"] for r in oneshot]
    server = [r["server"] for r in streamed]
    server_oa = [r["server"] for r in openai]
    # what lies outside the engine (STT, LLM, TTS: the load's noise) is the protocol's part:
    # client first audio minus the server's last voiced -> first audio, per round (plus an
    # offset the same for both: the client's level threshold vs Silero's end of speech)
    s_out = [r["first_audio_ms"] - r["server"]["last_voiced_to_first_audio_ms"] for r in streamed]
    oa_out = [r["first_audio_ms"] - r["server"]["last_voiced_to_first_audio_ms"] for r in openai]
    return {
        "utterance_s": round(len(pcm) / rate, 2),
        "rounds": rounds,
        "max_tokens": max_tokens,
        "reply_words_streamed": _median([r["words"] for r in streamed]),
        "reply_words_oneshot": _median([r["words"] for r in oneshot]),
        "transcript": streamed[0]["transcript"],
        "streamed_first_audio_ms": s_ms,
        "oneshot_first_audio_ms": o_ms,
        "streamed_p50_ms": _median(s_ms),
        "openai_first_audio_ms": oa_ms,
        "openai_p50_ms": _median(oa_ms),
        "openai_minus_streamed_p50_ms": round(_median(oa_ms) - _median(s_ms), 1),
        # per round (same utterance, back to back): less of the machine's noise
        "openai_minus_streamed_paired_p50_ms": _median(
            [o - f for o, f in zip(oa_ms, s_ms, strict=True)]
        ),
        "streamed_outside_engine_ms": [round(v, 1) for v in s_out],
        "openai_outside_engine_ms": [round(v, 1) for v in oa_out],
        "streamed_outside_engine_p50_ms": _median(s_out),
        "openai_outside_engine_p50_ms": _median(oa_out),
        "openai_minus_streamed_outside_engine_paired_p50_ms": _median(
            [o - f for o, f in zip(oa_out, s_out, strict=True)]
        ),
        "oneshot_p50_ms": _median(o_ms),
        "ratio_p50": round(statistics.median(s / o for s, o in zip(s_ms, o_ms, strict=True)), 3),
        "server_p50": {k: _median([t[k] for t in server]) for k in SERVER_STAGES},
        # the same stages through the OpenAI protocol (response.voicefleet_timings)
        "openai_server_p50": {k: _median([t[k] for t in server_oa]) for k in SERVER_STAGES},
    }


async def _text_turn(
    rt: OpenAIRealtimeClient, text: str, count: int
) -> tuple[float, dict[str, Any]]:
    t0 = time.perf_counter()
    await rt.send_event(
        {
            "type": "conversation.item.create",
            "item": {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": text}],
            },
        }
    )
    await rt.send_event({"type": "response.create"})
    created = await rt.wait_for("response.created", count=count, timeout_s=300)
    rid = created.data["response"]["id"]
    while not (first := [e for e in rt.of("response.output_audio_transcript.delta")
                         if e.data["response_id"] == rid]):  # fmt: skip
        await rt.wait_for("response.output_audio_transcript.delta",
                          count=len(rt.of("response.output_audio_transcript.delta")) + 1,
                          timeout_s=300)  # fmt: skip
    done = (await rt.wait_for("response.done", count=count, timeout_s=300)).data["response"]
    return (first[0].t - t0) * 1000, done["usage"]


async def run_history(
    url: str, api_key: str | None, conversations: int, max_tokens: int
) -> dict[str, Any]:
    session = {"max_output_tokens": max_tokens, "audio": {"input": {"turn_detection": None}}}
    clients = [await OpenAIRealtimeClient.open(url, api_key, session) for _ in range(conversations)]
    try:
        # a different opening per conversation, so no slot can borrow another's cache
        t1 = await asyncio.gather(*(
            _text_turn(rt, f"Conversation {i}. Read this: {PASSAGE} Summarise it.", 1)
            for i, rt in enumerate(clients)
        ))  # fmt: skip
        t2 = await asyncio.gather(*(_text_turn(rt, FOLLOW_UP, 2) for rt in clients))
    finally:
        await asyncio.gather(*(rt.close() for rt in clients))
    ttft1 = [t[0] for t in t1]
    ttft2 = [t[0] for t in t2]
    return {
        "conversations": conversations,
        "turn1_prompt_tokens_p50": _median([t[1]["input_tokens"] for t in t1]),
        "turn2_prompt_tokens_p50": _median([t[1]["input_tokens"] for t in t2]),
        "turn1_first_token_p50_ms": _median(ttft1),
        "turn2_first_token_p50_ms": _median(ttft2),
        "turn1_first_token_max_ms": round(max(ttft1), 1),
        "turn2_first_token_max_ms": round(max(ttft2), 1),
        "ratio_p50": round(_median(ttft2) / _median(ttft1), 3) if ttft1 else 0.0,
    }


async def _rss_bytes(c: httpx.AsyncClient) -> float:
    text = (await c.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith("process_resident_memory_bytes "):
            return float(line.split()[1])
    return 0.0


async def run_soak(url: str, api_key: str | None, sessions: int, seconds: float) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, headers=_headers(api_key), timeout=60) as c:
        wav = await make_utterance(c)
        pcm, rate = wav_pcm(wav)
        audio = np.concatenate([silence(rate, 0.2), trim_silence(pcm, rate), silence(rate, 1.0)])
        rss_start = await _rss_bytes(c)
        deadline = time.perf_counter() + seconds
        errors: list[str] = []
        turns: list[int] = []

        async def talker() -> None:
            try:
                rt = await OpenAIRealtimeClient.open(url, api_key, {"max_output_tokens": 24})
            except Exception as exc:
                errors.append(f"connect: {exc!r}")
                return
            done = 0
            try:
                while time.perf_counter() < deadline:
                    await rt.send_audio(audio, rate, pace=1.0)
                    await rt.wait_for("response.done", count=done + 1, timeout_s=120)
                    done += 1
            except Exception as exc:
                errors.append(repr(exc))
            finally:
                errors.extend(str(e.data) for e in rt.of("error"))
                await rt.close()
                turns.append(done)

        peak = rss_start
        task = asyncio.gather(*(talker() for _ in range(sessions)))
        while not task.done():
            peak = max(peak, await _rss_bytes(c))
            await asyncio.sleep(0.5)
        await task
        rss_end = await _rss_bytes(c)
    return {
        "sessions": sessions,
        "seconds": seconds,
        "turns": sum(turns),
        "errors": len(errors),
        "error_samples": errors[:3],
        "rss_start_mib": round(rss_start / 2**20, 1),
        "rss_peak_mib": round(max(peak, rss_end) / 2**20, 1),
        "rss_end_mib": round(rss_end / 2**20, 1),
    }


async def run_turns(url: str, api_key: str | None, rounds: int, sessions: int) -> dict[str, Any]:
    """The gate's realtime figures: `rounds` barge-ins over a long reply (the first also warms
    the realtime path: its story turn goes through VAD, STT, LLM and TTS before anything is
    timed, so no warm-up turn of its own), then first audio for the one-sentence question, one
    session `rounds` times and `sessions` sessions asking at once `rounds` times."""
    sp = await rt_turns.speech(url, api_key)
    barge = [await rt_turns.barge_in(url, api_key, sp) for _ in range(rounds)]
    ask = functools.partial(rt_turns.one_turn, url, api_key, sp.question, sp.rate, 24, linger=False)
    one = [await ask() for _ in range(rounds)]
    crowd: list[dict[str, Any]] = []
    errors: list[str] = []
    for _ in range(rounds):
        turns, errs = await rt_turns.concurrent(url, api_key, sp, sessions, 24)
        crowd += turns
        errors += errs
    many = rt_turns.summarise(crowd)
    return {
        "barge_in": rt_turns.summarise_barge_in(barge),
        "one_session": rt_turns.summarise(one),
        "concurrent": {"sessions": sessions, "turns": len(crowd), "errors": len(errors),
                       "error_samples": errors[:3], **many},
    }  # fmt: skip


def print_realtime(report: dict[str, Any]) -> None:
    fa = report.get("first_audio")
    if fa:
        words = fa["reply_words_streamed"]
        print(f"\nrealtime first audio ({fa['utterance_s']} s utterance, ~{words:.0f}-word "
              f"reply, {fa['rounds']} rounds, p50)")  # fmt: skip
        print(f"  OpenAI protocol (/v1/realtime):        {fa['openai_p50_ms']:.0f} ms "
              f"({fa['openai_minus_streamed_p50_ms']:+.0f} ms vs the first protocol, "
              f"paired per round {fa['openai_minus_streamed_paired_p50_ms']:+.0f} ms; "
              "goal <= +15)")  # fmt: skip
        print(f"  first protocol (from the last voiced): {fa['streamed_p50_ms']:.0f} ms")
        print(f"  outside the engine (client first audio - server last voiced -> first audio): "
              f"OpenAI {fa['openai_outside_engine_p50_ms']:.1f} ms, first protocol "
              f"{fa['streamed_outside_engine_p50_ms']:.1f} ms, paired per round "
              f"{fa['openai_minus_streamed_outside_engine_paired_p50_ms']:+.1f} ms")  # fmt: skip
        print(f"  one-shot /v1/voice:                    {fa['oneshot_p50_ms']:.0f} ms")
        print(f"  ratio streamed / one-shot:             {fa['ratio_p50']:.3f} (goal <= 0.5)")
        for label, key in (("first protocol", "server_p50"), ("OpenAI", "openai_server_p50")):
            stages = ", ".join(f"{k} {v:.0f}" for k, v in fa[key].items())
            print(f"  server, {label} (p50 ms): {stages}")
    hist = report.get("history")
    if hist:
        print(f"\nrealtime history ({hist['conversations']} concurrent conversations, "
              f"{hist['turn1_prompt_tokens_p50']:.0f}-token turn-1 prompts, "
              f"{hist['turn2_prompt_tokens_p50']:.0f}-token turn-2 prompts)")  # fmt: skip
        print(f"  LLM first token p50: turn 1 {hist['turn1_first_token_p50_ms']:.0f} ms, "
              f"turn 2 {hist['turn2_first_token_p50_ms']:.0f} ms, ratio {hist['ratio_p50']:.3f}"
              " (goal <= 0.3)")  # fmt: skip
    turns = report.get("turns")
    if turns:
        one, many = turns["one_session"], turns["concurrent"]
        print(f"\nrealtime turns (end of speech -> first audio): 1 session p50 "
              f"{one['first_audio_p50_ms']:.0f} ms p95 {one['first_audio_p95_ms']:.0f} ms; "
              f"{many['sessions']} at once p50 {many['first_audio_p50_ms']:.0f} ms p95 "
              f"{many['first_audio_p95_ms']:.0f} ms, {many['errors']} errors")  # fmt: skip
        barge = turns.get("barge_in")
        if barge:
            p50 = barge["reaction_p50_ms"]
            print(f"realtime barge-in (speech start -> reply stopped): p50 "
                  f"{'-' if p50 is None else f'{p50:.0f} ms'}, {barge['missed']} of "
                  f"{barge['rounds']} not stopped ({', '.join(barge['how'])})")  # fmt: skip
    soak = report.get("soak")
    if soak:
        print(f"\nrealtime soak: {soak['sessions']} sessions x {soak['seconds']:.0f} s: "
              f"{soak['turns']} turns, {soak['errors']} errors; service RSS "
              f"{soak['rss_start_mib']:.0f} MiB -> peak "
              f"{soak['rss_peak_mib']:.0f} MiB")  # fmt: skip


async def run_realtime(args: Any, api_key: str | None) -> dict[str, Any]:
    """The sections `voicefleet bench` asked for (flags in app/bench/cli.py)."""
    url = args.url.rstrip("/")
    report: dict[str, Any] = {}
    if args.realtime or args.realtime_only:
        report["first_audio"] = await run_first_audio(
            url, api_key, args.realtime_rounds, args.realtime_max_tokens
        )
        if args.realtime_conversations > 0:
            report["history"] = await run_history(url, api_key, args.realtime_conversations, 32)
    if args.realtime_turns:
        report["turns"] = await run_turns(url, api_key, args.realtime_turns, args.realtime_sessions)
    if args.realtime_soak:
        report["soak"] = await run_soak(url, api_key, args.realtime_sessions, args.realtime_soak)
    return report
