"""End of speech -> first reply audio over /v1/realtime, the turn path before and after the
early-STT / short-first-piece change, in one run on this machine.

Starts one llama-server (the tests' CPU build and models, `-np 8`) and two `voicefleet serve`
processes on it, identical but for the turn path: "before" runs with
`realtime.early_stt_silence_ms: 0` and `realtime.first_chunk_min_chars: 24` (the path as it
was; with no early pass there is no prefill either), "now" with the defaults (early STT,
prefill while the user speaks, short first piece; bench/realtime_prefill.py compares
prefill off and on alone). Rounds alternate between them, so both see the same load.
Figures (client-side, from the last voiced frame sent, audio at real-time pace):
- the one-sentence question: first-audio p50/p95 and the server's stage breakdown;
- two sentences with a 340 ms pause: answered once (one transcript with both, one answer,
  nothing cancelled) in how many rounds;
- 8 sessions asking at once: first-audio p50/p95 and errors.

usage: python3 bench/realtime_paths.py [--rounds 7] [--concurrent-rounds 2]
                                       [--json docs/results/cpu/realtime_paths.json]
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
KEY, LLAMA_KEY = "paths-bench-key-0123456789", "paths-bench-llama-key"
PATHS = {
    "before": {"VOICEFLEET_REALTIME__EARLY_STT_SILENCE_MS": "0",
               "VOICEFLEET_REALTIME__FIRST_CHUNK_MIN_CHARS": "24"},
    "now": {},
}  # fmt: skip
PARALLEL = 8


async def _measure(urls: dict[str, str], a: argparse.Namespace) -> dict[str, Any]:
    from app.bench import rt_turns

    sp = await rt_turns.speech(urls["now"], KEY)
    for url in urls.values():  # warm-up: models, the slot's cache of the system prompt
        await rt_turns.one_turn(url, KEY, sp.question, sp.rate, a.max_tokens)
    question: dict[str, list[dict[str, Any]]] = {k: [] for k in urls}
    paused: dict[str, list[dict[str, Any]]] = {k: [] for k in urls}
    crowd: dict[str, list[dict[str, Any]]] = {k: [] for k in urls}
    errors: dict[str, list[str]] = {k: [] for k in urls}
    for _ in range(a.rounds):
        for name, url in urls.items():
            question[name].append(await rt_turns.one_turn(url, KEY, sp.question, sp.rate,
                                                          a.max_tokens))  # fmt: skip
            paused[name].append(await rt_turns.one_turn(url, KEY, sp.paused, sp.rate,
                                                        a.max_tokens))  # fmt: skip
    for _ in range(a.concurrent_rounds):
        for name, url in urls.items():
            turns, errs = await rt_turns.concurrent(url, KEY, sp, PARALLEL, a.max_tokens)
            crowd[name] += turns
            errors[name] += errs
    out: dict[str, Any] = {}
    for name in urls:
        once = [rt_turns.answered_once(t) for t in paused[name]]
        c = rt_turns.summarise(crowd[name])
        out[name] = {
            "question": rt_turns.summarise(question[name]),
            "paused_request": {"rounds": len(once), "answered_once": sum(once),
                               "transcripts": [t["transcripts"] for t in paused[name]]},
            f"concurrent_{PARALLEL}": {"turns": len(crowd[name]), "errors": len(errors[name]),
                                       "error_samples": errors[name][:3],
                                       "first_audio_p50_ms": c["first_audio_p50_ms"],
                                       "first_audio_p95_ms": c["first_audio_p95_ms"],
                                       "server_p50": c["server_p50"]},
        }  # fmt: skip
    before, now = question["before"], question["now"]
    pairs = [n["first_audio_ms"] / b["first_audio_ms"] for b, n in zip(before, now, strict=True)]
    out["question_first_audio_p50_ratio_now_over_before"] = round(
        out["now"]["question"]["first_audio_p50_ms"]
        / out["before"]["question"]["first_audio_p50_ms"],
        3,
    )
    out["question_first_audio_round_ratio_p50"] = round(statistics.median(pairs), 3)
    return out


def _print(r: dict[str, Any]) -> None:
    for name in PATHS:
        q, p, c = r[name]["question"], r[name]["paused_request"], r[name][f"concurrent_{PARALLEL}"]
        print(f"{name:>6}: question first audio p50 {q['first_audio_p50_ms']:.0f} ms "
              f"p95 {q['first_audio_p95_ms']:.0f} ms ({q['early_transcripts']} early "
              f"transcripts); 340 ms pause answered once {p['answered_once']}/{p['rounds']}; "
              f"{PARALLEL} at once p50 {c['first_audio_p50_ms']:.0f} ms p95 "
              f"{c['first_audio_p95_ms']:.0f} ms, {c['errors']} errors")  # fmt: skip
        print(
            "        server p50: " + ", ".join(f"{k} {v:.0f}" for k, v in q["server_p50"].items())
        )
    print(
        f"question first audio p50, now / before: "
        f"{r['question_first_audio_p50_ratio_now_over_before']}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--concurrent-rounds", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--json", help="write the figures here")
    a = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from app.bench.stack import serve_paths

    with serve_paths(ROOT, PATHS, KEY, LLAMA_KEY, PARALLEL) as stack:
        figures = asyncio.run(_measure(stack.urls, a))
    report = {**stack.describe("bench/realtime_paths.py"),
              "paths": {"before": PATHS["before"], "now": "defaults"},
              "rounds": a.rounds, "concurrent_rounds": a.concurrent_rounds,
              "max_tokens": a.max_tokens, **figures}  # fmt: skip
    _print(figures)
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
