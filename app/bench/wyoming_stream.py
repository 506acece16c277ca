"""`voicefleet bench-wyoming-stream`: a Home Assistant-style streamed conversation against a
unit's Wyoming `handle`: how long until the first `handled-chunk` (what Home Assistant can
start speaking) against how long until `handled-stop` (the whole reply), per turn, in one run.

Each turn is what Home Assistant's Wyoming conversation agent sends (a `transcript` with its
conversation_id and device_id in the context), plus {"streaming": true} so the unit streams
with wyoming.streaming "request" (its default) as with "always". The prompts ask for three
sentences; turns whose reply has fewer are reported but left out of the ratio's summary.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from wyoming.asr import Transcript
from wyoming.handle import Handled, HandledChunk, HandledStop, NotHandled

from app import __version__
from app.bench.wyoming import BenchError, next_event, wait_ready, wyoming_client

PROMPTS = (
    "Describe the moon in three short sentences.",
    "Tell me three short facts about the ocean, one sentence each.",
    "In three short sentences, explain why the sky is blue.",
)
# the target: the first piece at most this fraction of the whole reply's time
TARGET_RATIO = 0.5
_SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)")


@dataclass
class Turn:
    prompt: str
    first_chunk_s: float
    handled_s: float
    stop_s: float
    chunks: int
    sentences: int
    reply_chars: int

    @property
    def ratio(self) -> float:
        return self.first_chunk_s / self.stop_s


async def converse(uri: str, prompt: str, timeout_s: float = 120.0) -> Turn:
    context = {"conversation_id": uuid.uuid4().hex, "device_id": "bench", "streaming": True}
    first: float | None = None
    chunks: list[str] = []
    reply: str | None = None
    async with wyoming_client(uri, timeout_s) as client:
        start = time.perf_counter()
        await client.write_event(Transcript(text=prompt, context=context).event())
        while True:
            event = await next_event(client)
            now = time.perf_counter() - start
            if NotHandled.is_type(event.type):
                raise BenchError(f"not-handled: {NotHandled.from_event(event).text}")
            if HandledChunk.is_type(event.type):
                first = now if first is None else first
                chunks.append(HandledChunk.from_event(event).text)
            elif Handled.is_type(event.type):
                reply, handled_s = Handled.from_event(event).text or "", now
            elif HandledStop.is_type(event.type):
                stop_s = now
                break
    if first is None or reply is None:
        raise BenchError("no handled-chunk / handled before handled-stop: not streamed")
    if "".join(chunks) != reply:
        raise BenchError("the handled-chunks do not spell the handled reply")
    sentences = len(_SENTENCE_END.findall(reply))
    return Turn(prompt, first, handled_s, stop_s, len(chunks), sentences, len(reply))


def _p50_ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 1) if values else float("nan")


async def run_stream_bench(uri: str, rounds: int, warmup: int) -> dict[str, Any]:
    for i in range(warmup):
        await converse(uri, PROMPTS[i % len(PROMPTS)])
    turns = [await converse(uri, PROMPTS[i % len(PROMPTS)]) for i in range(rounds)]
    three = [t for t in turns if t.sentences >= 3]
    ratio = statistics.median([t.ratio for t in three]) if three else float("nan")
    return {
        "tool": "voicefleet bench-wyoming-stream",
        "version": __version__,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "settings": {"uri": uri, "rounds": rounds, "warmup": warmup},
        "turns": [{**asdict(t), "ratio": round(t.ratio, 3)} for t in turns],
        "summary": {
            "turns_with_3_sentences": len(three),
            "first_chunk_p50_ms": _p50_ms([t.first_chunk_s for t in three]),
            "stop_p50_ms": _p50_ms([t.stop_s for t in three]),
            "first_chunk_to_stop_ratio_p50": round(ratio, 3),
            "target_ratio": TARGET_RATIO,
            "meets_target": bool(three) and ratio <= TARGET_RATIO,
        },
    }


def print_report(report: dict[str, Any]) -> None:
    print(f"voicefleet bench-wyoming-stream — {report['settings']['uri']} — {report['time']}")
    print("turn  sentences chunks  first handled-chunk  handled-stop  ratio")
    for i, t in enumerate(report["turns"], 1):
        print(f"{i:>4}  {t['sentences']:>9} {t['chunks']:>6}  {t['first_chunk_s'] * 1000:>14.0f} ms"
              f"  {t['stop_s'] * 1000:>9.0f} ms  {t['ratio']:.3f}")  # fmt: skip
    s = report["summary"]
    verdict = "meets" if s["meets_target"] else "MISSES"
    ratio = s["first_chunk_to_stop_ratio_p50"]
    print(f"\n{s['turns_with_3_sentences']} turns with >= 3 sentences: first chunk p50 "
          f"{s['first_chunk_p50_ms']:.0f} ms, stop p50 {s['stop_p50_ms']:.0f} ms, "
          f"ratio p50 {ratio:.3f} ({verdict} <= {s['target_ratio']})")  # fmt: skip


def _run(args: argparse.Namespace) -> int:
    async def main() -> dict[str, Any]:
        await wait_ready([args.ours], args.wait)
        return await run_stream_bench(args.ours, args.rounds, args.warmup)

    report = asyncio.run(main())
    print_report(report)
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwrote {path}", file=sys.stderr)
    return 0 if report["summary"]["meets_target"] else 1


def register(sub: Any) -> None:
    p = sub.add_parser(
        "bench-wyoming-stream",
        help="Home Assistant-style streamed conversation: first handled-chunk vs handled-stop",
    )
    p.add_argument("--ours", required=True, help="the unit's Wyoming server, tcp://HOST:PORT")
    p.add_argument("--rounds", type=int, default=9, help="measured turns (default 9)")
    p.add_argument("--warmup", type=int, default=1, help="unmeasured turns first (default 1)")
    p.add_argument("--wait", type=float, default=120, help="seconds to wait for the server")
    p.add_argument("--json", help="write the report here")
    p.set_defaults(func=_run)
