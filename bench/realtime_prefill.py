"""A follow-up realtime turn with and without prefilling the LLM while the user speaks
(`realtime.prefill_llm`), in one run on this machine.

Starts one llama-server (the tests' CPU build and models, `-np 8`) and two `voicefleet serve`
processes on it, identical but for `realtime.prefill_llm` (off / on, the default). Each
round and path is one session: turn 1 is typed — a ~340-token passage to summarise, with an
opening unique to the session — and answered, which leaves a ~400-token history in the
session's slot; once its audio has played, turn 2 is spoken at real-time pace: two sentences
of one request with a 340 ms pause between them ("Please turn on the kitchen lights." /
"And tell me what time it is."). Rounds alternate between the paths, so both see the same
load. Figures for turn 2:
- prompt tokens llama-server evaluated at the end of speech (prompt_tokens - cached: its
  `usage.prompt_tokens_details.cached_tokens`), and what the prefills evaluated before;
- end of speech -> LLM first token (server) and -> first audio (client, from the last
  voiced frame sent);
- answered once (one transcript with both sentences, one answer, nothing cancelled).

usage: python3 bench/realtime_prefill.py [--rounds 7] [--max-tokens 24]
                                         [--json docs/results/cpu/realtime_prefill.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
KEY, LLAMA_KEY = "prefill-bench-key-0123456789", "prefill-bench-llama-key"
PATHS = {"off": {"VOICEFLEET_REALTIME__PREFILL_LLM": "false"}, "on": {}}
PARALLEL = 8
SERVER = ("vad_end_to_llm_first_token_ms", "llm_ttft_ms", "vad_end_to_first_audio_ms",
          "prefill_wait_ms")  # fmt: skip


async def _follow_up(
    url: str, pcm: Any, rate: int, opening: str, max_tokens: int
) -> dict[str, Any]:
    import numpy as np

    from app.bench.followup import PASSAGE
    from app.bench.pcm import silence
    from app.bench.rt_client import RealtimeClient
    from app.bench.rt_turns import answered_once

    rt = await RealtimeClient.open(url, KEY, rate, max_tokens=max_tokens, temperature=0.0)
    try:
        await rt.send_event({"type": "input_text",
                             "text": f"{opening} Read this: {PASSAGE} Summarise it."})  # fmt: skip
        done = await rt.wait_for("response.done", timeout_s=300)
        turn1 = (await rt.wait_for("turn.timings", timeout_s=60)).data
        await rt.send_event({"type": "ping"})  # a slow turn 1 is not the client idling
        out_rate = rt.of("session.created")[0].data["output_sample_rate"]
        # its audio plays out first: speaking over it would be a barge-in
        await asyncio.sleep(len(rt.audio[done.data["turn"]]) / 2 / out_rate + 0.3)
        audio_before = len(rt.of("response.audio"))
        audio = np.concatenate([silence(rate, 0.3), pcm, silence(rate, 1.2)])
        t_voiced = await rt.send_audio(audio, rate, pace=1.0)
        first = await rt.wait_for("response.audio", count=audio_before + 1, timeout_s=300)
        await rt.wait_for("response.done", count=2, timeout_s=300)
        turn2 = (await rt.wait_for("turn.timings", count=2, timeout_s=60)).data
        await rt.send_audio(silence(rate, 0.8), rate, pace=0)  # a second answer would show
        await asyncio.sleep(0.8)
    finally:
        await rt.close()
    heard = {"transcripts": [e.data["text"] for e in rt.of("transcript")[1:]],
             "answers": len(rt.of("response.done")) - 1,
             "cancelled": len(rt.of("response.cancelled"))}  # fmt: skip
    return {
        "first_audio_ms": round((first.t - t_voiced) * 1000, 1),
        "history_tokens": turn1["prompt_tokens"] + turn1["completion_tokens"],
        "answered_once": answered_once(heard),
        "transcript": heard["transcripts"][-1] if heard["transcripts"] else "",
        "server": turn2,
    }


def _p50(values: list[float]) -> float:
    return round(statistics.median(values), 1) if values else 0.0


def _summary(turns: list[dict[str, Any]]) -> dict[str, Any]:
    s = [t["server"] for t in turns]
    return {
        "history_tokens_p50": _p50([t["history_tokens"] for t in turns]),
        "prompt_tokens_p50": _p50([x["prompt_tokens"] for x in s]),
        "evaluated_at_end_p50": _p50([x["prompt_tokens"] - x["prompt_cached_tokens"] for x in s]),
        "evaluated_at_end": [x["prompt_tokens"] - x["prompt_cached_tokens"] for x in s],
        "prefills_p50": _p50([x["prefills"] for x in s]),
        "prefill_tokens_p50": _p50([x["prefill_tokens"] for x in s]),
        "first_audio_p50_ms": _p50([t["first_audio_ms"] for t in turns]),
        "first_audio_ms": [t["first_audio_ms"] for t in turns],
        "server_p50": {k: _p50([x[k] for x in s]) for k in SERVER},
        "answered_once": sum(t["answered_once"] for t in turns),
        "rounds": len(turns),
        "transcripts": [t["transcript"] for t in turns],
    }


async def _measure(urls: dict[str, str], a: argparse.Namespace) -> dict[str, Any]:
    from app.bench import rt_turns

    sp = await rt_turns.speech(urls["on"], KEY)
    for url in urls.values():  # warm-up: models, the slot's cache of the system prompt
        await rt_turns.one_turn(url, KEY, sp.question, sp.rate, a.max_tokens)
    turns: dict[str, list[dict[str, Any]]] = {k: [] for k in urls}
    for i in range(a.rounds):
        for name, url in urls.items():
            opening = f"Conversation {i} ({name})."
            turns[name].append(await _follow_up(url, sp.paused, sp.rate, opening, a.max_tokens))
    out: dict[str, Any] = {name: _summary(t) for name, t in turns.items()}
    off, on = out["off"], out["on"]

    def ratio(x: float, y: float) -> float:
        return round(x / y, 3) if y else 0.0

    out["ratios_on_over_off"] = {
        "evaluated_at_end_p50": ratio(on["evaluated_at_end_p50"], off["evaluated_at_end_p50"]),
        "first_token_p50": ratio(on["server_p50"]["vad_end_to_llm_first_token_ms"],
                                 off["server_p50"]["vad_end_to_llm_first_token_ms"]),
        "first_audio_p50": ratio(on["first_audio_p50_ms"], off["first_audio_p50_ms"]),
        "first_audio_round_ratio_p50": _p50([
            n["first_audio_ms"] / f["first_audio_ms"]
            for f, n in zip(turns["off"], turns["on"], strict=True)
        ]),
    }  # fmt: skip
    return out


def _print(r: dict[str, Any]) -> None:
    for name in PATHS:
        x = r[name]
        sv = x["server_p50"]
        print(f"prefill {name:>3}: history {x['history_tokens_p50']:.0f} tokens; at end of "
              f"speech llama-server evaluated {x['evaluated_at_end_p50']:.0f} of "
              f"{x['prompt_tokens_p50']:.0f} prompt tokens (p50; {x['prefills_p50']:.0f} "
              f"prefills evaluated {x['prefill_tokens_p50']:.0f} before); VAD end -> first "
              f"token {sv['vad_end_to_llm_first_token_ms']:.0f} ms (llama-server TTFT "
              f"{sv['llm_ttft_ms']:.0f}, prefill wait {sv['prefill_wait_ms']:.0f}); first audio "
              f"p50 {x['first_audio_p50_ms']:.0f} ms; answered once "
              f"{x['answered_once']}/{x['rounds']}")  # fmt: skip
    print("on / off: " + ", ".join(f"{k} {v}" for k, v in r["ratios_on_over_off"].items()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--max-tokens", type=int, default=24)
    ap.add_argument("--json", help="write the figures here")
    a = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from app.bench.stack import serve_paths

    with serve_paths(ROOT, PATHS, KEY, LLAMA_KEY, PARALLEL) as stack:
        figures = asyncio.run(_measure(stack.urls, a))
    report = {**stack.describe("bench/realtime_prefill.py"),
              "paths": PATHS, "rounds": a.rounds, "max_tokens": a.max_tokens,
              "pause_s": 0.34, **figures}  # fmt: skip
    _print(figures)
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
