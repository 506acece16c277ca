"""`voicefleet bench`: print figures and write JSON.

With --llm-url, the same streaming load also runs straight against llama-server in the same
run (interleaved per round), and the service/raw ratios are reported: the service's cost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import httpx

from app import __version__
from app.bench.followup import Target, print_followup, run_followup
from app.bench.gate import evaluate, load_thresholds, print_gate
from app.bench.load import LoadResult, run_load, served_models
from app.bench.quality import run_quality
from app.bench.realtime import print_realtime, run_realtime
from app.bench.telemetry import TelemetryRecorder, print_telemetry
from app.bench.voice import run_voice


async def _served_llm(url: str, api_key: str | None) -> str:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    async with httpx.AsyncClient(base_url=url.rstrip("/"), headers=headers, timeout=30) as c:
        return (await served_models(c))["llm"]


def _median_round(results: list[LoadResult]) -> LoadResult:
    ordered = sorted(results, key=lambda r: r.aggregate_tps)
    return ordered[len(ordered) // 2]


async def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    api_key = args.api_key or os.environ.get("VOICEFLEET_API_KEY")
    llm_key = args.llm_api_key or os.environ.get("LLAMA_API_KEY")
    model = args.model or await _served_llm(args.url, api_key)
    clients_list = [int(c) for c in args.clients.split(",")]
    targets = [("service", args.url, api_key)]
    if args.realtime_only:
        return {**_header(model, args, clients_list), "llm": [], "ratios": [], "voice": [],
                "realtime": await run_realtime(args, api_key)}  # fmt: skip
    if args.llm_url:
        targets.insert(0, ("llama-server", args.llm_url, llm_key))

    # warm both paths (model pages, prompt cache) before measuring
    for name, url, key in targets:
        await run_load(name, url, key, model, 1, 1, 8)

    rounds: dict[tuple[str, int], list[LoadResult]] = {}
    for _ in range(args.rounds):
        for clients in clients_list:
            for name, url, key in targets:
                result = await run_load(
                    name, url, key, model, clients, args.requests, args.max_tokens
                )
                rounds.setdefault((name, clients), []).append(result)

    llm: list[dict[str, Any]] = []
    ratios: list[dict[str, Any]] = []
    for clients in clients_list:
        for name, _, _ in targets:
            llm.append(_median_round(rounds[(name, clients)]).as_dict())
        if args.llm_url:
            pairs = list(
                zip(rounds[("service", clients)], rounds[("llama-server", clients)], strict=True)
            )
            ratios.append(
                {
                    "clients": clients,
                    "aggregate_tps_ratio": round(
                        statistics.median(
                            s.aggregate_tps / r.aggregate_tps for s, r in pairs if r.aggregate_tps
                        ),
                        3,
                    ),
                    "ttft_added_p50_ms": round(
                        statistics.median(s.ttft_p50_ms - r.ttft_p50_ms for s, r in pairs), 1
                    ),
                }
            )

    voice = []
    if args.voice_turns > 0:
        for clients in clients_list:
            voice.append(
                await run_voice(args.url, api_key, clients, args.voice_turns, args.voice_max_tokens)
            )
    quality = await run_quality(args.url, api_key) if args.quality else None
    followup = await _followup(args, model, api_key, llm_key) if args.followup else None
    return {
        "tool": "voicefleet bench",
        "version": __version__,
        "host": platform.node(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": model,
        "settings": {
            "clients": clients_list,
            "requests_per_client": args.requests,
            "max_tokens": args.max_tokens,
            "rounds": args.rounds,
        },
        "llm": llm,
        "ratios": ratios,
        "voice": voice,
        **({"realtime": await run_realtime(args, api_key)} if _wants_realtime(args) else {}),
        **({"quality": quality} if quality is not None else {}),
        **({"followup": followup} if followup is not None else {}),
    }


async def _followup(
    args: argparse.Namespace, model: str, api_key: str | None, llm_key: str | None
) -> list[dict[str, Any]]:
    targets = [Target("service", args.url, api_key)]
    if args.followup_nocache_url:
        targets.append(Target("service (cache_prompt off)", args.followup_nocache_url, api_key))
    if args.llm_url:
        targets.append(Target("llama-server", args.llm_url, llm_key, {"cache_prompt": True}))
        targets.append(
            Target("llama-server (cache_prompt off)", args.llm_url, llm_key,
                   {"cache_prompt": False})
        )  # fmt: skip
    return await run_followup(
        targets, model, args.followup_conversations, args.followup_max_tokens,
        args.followup_rounds,
    )  # fmt: skip


async def run_recorded(args: argparse.Namespace) -> dict[str, Any]:
    """run_bench with the unit's telemetry sampled throughout (--telemetry-url)."""
    if not args.telemetry_url:
        return await run_bench(args)
    recorder = TelemetryRecorder(args.telemetry_url)
    recorder.start()
    try:
        report = await run_bench(args)
    finally:
        telemetry = await recorder.stop()
    return {**report, "telemetry": telemetry}


def _wants_realtime(args: argparse.Namespace) -> bool:
    return bool(args.realtime or args.realtime_soak or args.realtime_turns)


def _header(model: str, args: argparse.Namespace, clients: list[int]) -> dict[str, Any]:
    """The report's header keys, for --realtime-only (which skips the LLM/voice sections)."""
    settings = dict(clients=clients, requests_per_client=args.requests,
                    max_tokens=args.max_tokens, rounds=args.rounds)  # fmt: skip
    return dict(tool="voicefleet bench", version=__version__, host=platform.node(),
                time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), model=model,
                settings=settings)  # fmt: skip


def print_report(report: dict[str, Any]) -> None:
    print(f"voicefleet bench — model {report['model']} — {report['time']}")
    print("\nLLM streaming (median round)")
    print(f"{'target':<13}{'clients':>8}{'ttft p50':>10}{'ttft p95':>10}"
          f"{'tok/s/stream':>14}{'tok/s total':>13}{'errors':>8}")  # fmt: skip
    for r in report["llm"]:
        print(f"{r['target']:<13}{r['clients']:>8}{r['ttft_p50_ms']:>8.0f}ms"
              f"{r['ttft_p95_ms']:>8.0f}ms{r['stream_tps_p50']:>14.1f}"
              f"{r['aggregate_tps']:>13.1f}{r['errors']:>8}")  # fmt: skip
    if report["ratios"]:
        print("\nservice / llama-server (same run, median of rounds)")
        for r in report["ratios"]:
            print(f"  {r['clients']} clients: aggregate tok/s ratio {r['aggregate_tps_ratio']:.3f}"
                  f", TTFT added p50 {r['ttft_added_p50_ms']:+.1f} ms")  # fmt: skip
    if report["voice"]:
        print("\nvoice turns (/v1/voice, p50 / p95 ms)")
        for v in report["voice"]:
            stages = "  ".join(
                f"{s.removesuffix('_ms')} {v[s + '_p50']:.0f}/{v[s + '_p95']:.0f}"
                for s in ("stt_ms", "llm_ttft_ms", "llm_total_ms", "tts_ms", "total_ms")
            )
            print(f"  {v['clients']} clients, {v['turns']} turns, {v['errors']} errors: {stages}")
    if report.get("followup"):
        print_followup(report["followup"])
    if report.get("realtime"):
        print_realtime(report["realtime"])
    if report.get("telemetry"):
        print_telemetry(report["telemetry"])


def _bench(args: argparse.Namespace) -> int:
    thresholds = load_thresholds(Path(args.thresholds)) if args.thresholds else None
    report = asyncio.run(run_recorded(args))
    print_report(report)
    if thresholds is not None:
        report["gate"] = evaluate(report, thresholds)
        print_gate(report["gate"])
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    failed = sum(r["errors"] for r in report["llm"]) + sum(v["errors"] for v in report["voice"])
    failed += report.get("realtime", {}).get("soak", {}).get("errors", 0)
    failed += report.get("realtime", {}).get("turns", {}).get("concurrent", {}).get("errors", 0)
    failed += sum(f["errors"] for f in report.get("followup", []))
    if "gate" in report:  # the gate decides (it counts errors among its checks)
        return 0 if report["gate"]["passed"] else 1
    return 1 if failed else 0


def register(sub: Any) -> None:
    p = sub.add_parser("bench", help="benchmark a unit's service (and raw llama-server)")
    p.add_argument("--url", default="http://127.0.0.1:8000", help="the voice service")
    p.add_argument("--api-key", help="service key (default: $VOICEFLEET_API_KEY)")
    p.add_argument("--llm-url", help="raw llama-server URL, measured in the same run")
    p.add_argument("--llm-api-key", help="llama-server key (default: $LLAMA_API_KEY)")
    p.add_argument("--model", help="LLM model id (default: the one the service lists)")
    p.add_argument("--clients", default="1,8", help="comma-separated concurrency levels")
    p.add_argument("--requests", type=int, default=2, help="requests per client per round")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds per target")
    p.add_argument("--voice-turns", type=int, default=1, help="voice turns per client")
    p.add_argument("--voice-max-tokens", type=int, default=32)
    p.add_argument("--json", help="write the report here")
    p.add_argument("--quality", action="store_true", help="LLM answer + speech round-trip checks")
    p.add_argument("--thresholds", help="gate: JSON/YAML thresholds; exit 1 when short of them")
    p.add_argument(
        "--telemetry-url",
        help="the unit's Jetson telemetry exporter (/metrics), sampled during the run: max "
        "temperature and throttling in the report (gate: forbid_throttling)",
    )
    fu = p.add_argument_group("follow-up turns (chat API, prompt cache)")
    fu.add_argument("--followup", action="store_true",
                    help="turn-2 vs turn-1 first-token time of concurrent conversations with "
                         "~400-token histories: the service, and (with --llm-url) raw "
                         "llama-server with cache_prompt on and off")  # fmt: skip
    fu.add_argument("--followup-conversations", type=int, default=8)
    fu.add_argument("--followup-rounds", type=int, default=2)
    fu.add_argument("--followup-max-tokens", type=int, default=32)
    fu.add_argument(
        "--followup-nocache-url", help="a second service run with llm.cache_prompt false"
    )
    rt = p.add_argument_group("realtime (/v1/realtime)")
    rt.add_argument("--realtime", action="store_true",
                    help="first audio streamed vs one-shot /v1/voice, and turn-2 vs turn-1 "
                         "first-token time of concurrent conversations")  # fmt: skip
    rt.add_argument(
        "--realtime-only",
        action="store_true",
        help="run only the realtime sections (no LLM load, no /v1/voice turns)",
    )
    rt.add_argument("--realtime-rounds", type=int, default=3,
                    help="interleaved streamed/one-shot rounds")  # fmt: skip
    rt.add_argument("--realtime-max-tokens", type=int, default=96,
                    help="reply length for the first-audio comparison (~60 words)")  # fmt: skip
    rt.add_argument("--realtime-conversations", type=int, default=8)
    rt.add_argument("--realtime-soak", type=float, default=0.0, metavar="SECONDS",
                    help="N sessions talking for SECONDS: errors and peak RSS")  # fmt: skip
    rt.add_argument("--realtime-sessions", type=int, default=8,
                    help="sessions in the soak and in --realtime-turns' concurrent part "
                         "(llm.parallel)")  # fmt: skip
    rt.add_argument("--realtime-turns", type=int, default=0, metavar="ROUNDS",
                    help="end of speech -> first audio for one question: 1 session and "
                         "--realtime-sessions at once, ROUNDS each (the gate's realtime "
                         "figures)")  # fmt: skip
    p.set_defaults(func=_bench)
