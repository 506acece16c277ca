"""`voicefleet bench-wyoming`: STT and TTS latency of Wyoming servers, measured by one
independent Wyoming client (the wyoming package's), interleaved in one run.

Our server (`--ours`) is compared with reference servers (`--stt-ref`: wyoming-faster-whisper,
`--tts-ref`: wyoming-piper) on the same model files and machine; each case alternates the
order of the targets round by round, so drift (heat, other load) hits both alike. Reported: the
median per case and target, and ours/reference ratios of the medians (below 1: ours faster).
scripts/bench_wyoming.sh starts the three servers and runs this.

- STT, as Home Assistant sends it: a new connection, `transcribe`, `audio-start`, the
  utterance as 16 kHz 16-bit mono `audio-chunk`s of 1024 samples (sent at once: the server
  buffers; Home Assistant streams in real time, so what the user waits for is the time from
  the end of the audio), `audio-stop` → `transcript`. Measured: audio-stop → transcript.
- TTS: a new connection, `synthesize` → `audio-start`, `audio-chunk`+, `audio-stop`. Measured:
  first audio (synthesize → first audio-chunk) and total (→ audio-stop).

The utterances are spoken by the TTS under test itself (`--ours`), once, before measuring.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.tts import Synthesize

from app import __version__

STT_RATE = 16000
CHUNK_SAMPLES = 1024

STT_CASES = {
    "short": "Turn on the kitchen lights.",
    "long": "What will the weather be like tomorrow morning? Remind me to water the plants "
    "before I leave for work, and tell me when the next bus to the station leaves.",
}
TTS_CASES = {
    "short": "The kitchen lights are on.",
    "long": "Tomorrow morning will be cloudy with a high of fourteen degrees. Light rain is "
    "expected after noon, so take an umbrella. The next bus to the station leaves at "
    "seven forty.",
}


class BenchError(Exception):
    pass


def _endpoint(uri: str) -> tuple[str, int]:
    parsed = urlparse(uri)
    if parsed.scheme != "tcp" or parsed.hostname is None or parsed.port is None:
        raise ValueError(f"{uri!r}: expected tcp://HOST:PORT")
    return parsed.hostname, parsed.port


def wyoming_client(uri: str, timeout_s: float) -> AsyncTcpClient:
    host, port = _endpoint(uri)
    return AsyncTcpClient(host, port, connect_timeout=timeout_s, read_timeout=timeout_s)


async def next_event(client: AsyncTcpClient) -> Event:
    event = await client.read_event()
    if event is None:
        raise BenchError("the server closed the connection")
    if Error.is_type(event.type):
        error = Error.from_event(event)
        raise BenchError(f"error event: {error.code}: {error.text}")
    return event


async def describe(uri: str, timeout_s: float = 10.0) -> Info:
    async with wyoming_client(uri, timeout_s) as client:
        await client.write_event(Describe().event())
        while True:
            event = await next_event(client)
            if Info.is_type(event.type):
                return Info.from_event(event)


async def wait_ready(uris: list[str], timeout_s: float) -> None:
    """Until every server answers describe (they load their models first)."""
    deadline = time.monotonic() + timeout_s
    for uri in uris:
        while True:
            try:
                await describe(uri, timeout_s=5.0)
                break
            except (OSError, BenchError, TimeoutError) as exc:
                if time.monotonic() > deadline:
                    raise BenchError(f"{uri} not ready after {timeout_s:.0f} s: {exc}") from exc
                await asyncio.sleep(0.5)


@dataclass
class Speech:
    pcm: bytes
    rate: int
    first_audio_s: float
    total_s: float


async def synthesize(uri: str, text: str, timeout_s: float = 60.0) -> Speech:
    start = time.perf_counter()
    first: float | None = None
    rate = 0
    audio = bytearray()
    async with wyoming_client(uri, timeout_s) as client:
        await client.write_event(Synthesize(text=text).event())
        while True:
            event = await next_event(client)
            if AudioStart.is_type(event.type):
                rate = AudioStart.from_event(event).rate
            elif AudioChunk.is_type(event.type):
                chunk = AudioChunk.from_event(event)
                if first is None:
                    first = time.perf_counter() - start
                if (chunk.width, chunk.channels) != (2, 1):
                    raise BenchError(f"unexpected audio format {chunk.width}/{chunk.channels}")
                rate = chunk.rate
                audio += chunk.audio
            elif AudioStop.is_type(event.type):
                break
    total = time.perf_counter() - start
    if first is None or not audio or not rate:
        raise BenchError("no audio")
    return Speech(bytes(audio), rate, first, total)


def to_stt_rate(pcm: bytes, rate: int) -> bytes:
    """16 kHz 16-bit mono, as Home Assistant sends (PyAV's band-limited resampler)."""
    if rate == STT_RATE:
        return pcm
    import av

    samples = np.frombuffer(pcm, "<i2").astype(np.float32) / 32768.0
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="s16", layout="mono", rate=STT_RATE)
    out = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    out += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return bytes(np.concatenate(out).astype("<i2").tobytes())


@dataclass
class Heard:
    text: str
    after_stop_s: float
    total_s: float


async def transcribe(uri: str, pcm16k: bytes, timeout_s: float = 120.0) -> Heard:
    step = CHUNK_SAMPLES * 2
    start = time.perf_counter()
    async with wyoming_client(uri, timeout_s) as client:
        await client.write_event(Transcribe(language="en").event())
        await client.write_event(AudioStart(rate=STT_RATE, width=2, channels=1).event())
        for offset in range(0, len(pcm16k), step):
            part = pcm16k[offset : offset + step]
            await client.write_event(
                AudioChunk(rate=STT_RATE, width=2, channels=1, audio=part).event()
            )
        stop = time.perf_counter()
        await client.write_event(AudioStop().event())
        while True:
            event = await next_event(client)
            if Transcript.is_type(event.type):
                text = Transcript.from_event(event).text
                break
    end = time.perf_counter()
    return Heard(text, end - stop, end - start)


def _words(text: str) -> list[str]:
    return [w.strip(".,?!;:").lower() for w in text.split() if w.strip(".,?!;:")]


def word_recall(expected: str, heard: str) -> float:
    want, got = _words(expected), set(_words(heard))
    return sum(w in got for w in want) / len(want) if want else 1.0


@dataclass
class Series:
    target: str
    uri: str
    samples_ms: dict[str, list[float]] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)

    def add(self, metric: str, seconds: float) -> None:
        self.samples_ms.setdefault(metric, []).append(round(seconds * 1000, 2))

    def p50(self, metric: str) -> float:
        values = self.samples_ms.get(metric) or []
        return float(statistics.median(values)) if values else math.nan


def _ratio(ours: float, ref: float) -> float:
    return (
        round(ours / ref, 3) if ref and not math.isnan(ours) and not math.isnan(ref) else math.nan
    )


def _geomean(values: list[float]) -> float:
    ok = [v for v in values if v > 0 and not math.isnan(v)]
    return round(math.exp(sum(math.log(v) for v in ok) / len(ok)), 3) if ok else math.nan


async def run_wyoming_bench(
    ours: str,
    stt_ref: str | None,
    tts_ref: str | None,
    rounds: int,
    warmup: int = 1,
    gap_s: float = 0.0,
) -> dict[str, Any]:
    errors: list[dict[str, str]] = []
    # the utterances, spoken by our TTS once
    utterances = {
        case: to_stt_rate(s.pcm, s.rate)
        for case, s in [(c, await synthesize(ours, t)) for c, t in STT_CASES.items()]
    }
    stt_targets = [("voicefleet", ours)] + (
        [("wyoming-faster-whisper", stt_ref)] if stt_ref else []
    )
    tts_targets = [("voicefleet", ours)] + ([("wyoming-piper", tts_ref)] if tts_ref else [])
    stt = {(case, name): Series(name, uri) for case in STT_CASES for name, uri in stt_targets}
    tts = {(case, name): Series(name, uri) for case in TTS_CASES for name, uri in tts_targets}

    for n in range(warmup + rounds):
        measured = n >= warmup
        for case, pcm in utterances.items():
            order = stt_targets if n % 2 == 0 else stt_targets[::-1]
            for name, uri in order:
                await asyncio.sleep(gap_s)
                try:
                    heard = await transcribe(uri, pcm)
                except (OSError, BenchError, TimeoutError) as exc:
                    errors.append({"program": "asr", "target": name, "case": case,
                                   "error": f"{type(exc).__name__}: {exc}"})  # fmt: skip
                    continue
                if measured:
                    series = stt[(case, name)]
                    series.add("after_stop", heard.after_stop_s)
                    series.add("total", heard.total_s)
                    series.notes["transcript"] = heard.text
                    series.notes["word_recall"] = round(word_recall(STT_CASES[case], heard.text), 3)
        for case, text in TTS_CASES.items():
            order = tts_targets if n % 2 == 0 else tts_targets[::-1]
            for name, uri in order:
                await asyncio.sleep(gap_s)
                try:
                    speech = await synthesize(uri, text)
                except (OSError, BenchError, TimeoutError) as exc:
                    errors.append({"program": "tts", "target": name, "case": case,
                                   "error": f"{type(exc).__name__}: {exc}"})  # fmt: skip
                    continue
                if measured:
                    series = tts[(case, name)]
                    series.add("first_audio", speech.first_audio_s)
                    series.add("total", speech.total_s)
                    series.notes["audio_s"] = round(len(speech.pcm) / 2 / speech.rate, 3)
                    series.notes["rate"] = speech.rate

    stt_rows = _rows(stt, STT_CASES, stt_targets, ("after_stop", "total"), utterances)
    tts_rows = _rows(tts, TTS_CASES, tts_targets, ("first_audio", "total"), None)
    summary = {
        "stt_after_stop_ratio": _geomean([r["ratio"]["after_stop"] for r in stt_rows]),
        "tts_first_audio_ratio": _geomean([r["ratio"]["first_audio"] for r in tts_rows]),
        "tts_total_ratio": _geomean([r["ratio"]["total"] for r in tts_rows]),
    }
    return {
        "tool": "voicefleet bench-wyoming",
        "version": __version__,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "host": platform.node(),
            "cpu": _cpu_model(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
        },
        "client": {"wyoming": _version("wyoming")},
        "targets": {"ours": ours, "stt_ref": stt_ref, "tts_ref": tts_ref},
        "servers": {
            uri: await _programs(uri) for uri in dict.fromkeys([ours, stt_ref, tts_ref]) if uri
        },
        "settings": {
            "rounds": rounds,
            "warmup": warmup,
            "gap_s": gap_s,
            "chunk_samples": CHUNK_SAMPLES,
            "stt_rate": STT_RATE,
        },
        "stt": stt_rows,
        "tts": tts_rows,
        "summary": summary,
        "errors": errors,
    }


def _rows(
    series: dict[tuple[str, str], Series],
    cases: dict[str, str],
    targets: list[tuple[str, str]],
    metrics: tuple[str, str],
    audio: dict[str, bytes] | None,
) -> list[dict[str, Any]]:
    rows = []
    for case in cases:
        by_target = {name: series[(case, name)] for name, _ in targets}
        ours = by_target["voicefleet"]
        ref = next((s for name, s in by_target.items() if name != "voicefleet"), None)
        row: dict[str, Any] = {
            "case": case,
            "text": cases[case],
            "targets": {
                name: {
                    **{f"{m}_p50_ms": round(s.p50(m), 1) for m in metrics},
                    "samples_ms": s.samples_ms,
                    **s.notes,
                }
                for name, s in by_target.items()
            },
            "ratio": {m: _ratio(ours.p50(m), ref.p50(m)) if ref else math.nan for m in metrics},
        }
        if audio is not None:
            row["audio_s"] = round(len(audio[case]) / 2 / STT_RATE, 3)
        rows.append(row)
    return rows


async def _programs(uri: str) -> dict[str, Any]:
    try:
        info = await describe(uri)
    except (OSError, BenchError, TimeoutError) as exc:
        return {"error": str(exc)}
    return {
        kind: [{"name": p.name, "version": p.version} for p in programs]
        for kind, programs in (("asr", info.asr), ("tts", info.tts), ("handle", info.handle))
        if programs
    }


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def print_report(report: dict[str, Any]) -> None:
    m = report["machine"]
    print(f"voicefleet bench-wyoming — {m['cpu']} ({m['cores']} cores) — {report['time']}")
    print(f"rounds {report['settings']['rounds']} (+{report['settings']['warmup']} warm-up), "
          f"{report['settings']['gap_s']} s idle before each request, "
          "interleaved; p50 ms; ratio = voicefleet / reference (below 1: faster)")  # fmt: skip
    print("\nSTT: audio-stop → transcript")
    for row in report["stt"]:
        cells = "  ".join(
            f"{name} {t['after_stop_p50_ms']:.0f} (recall {t.get('word_recall', 0):.2f})"
            for name, t in row["targets"].items()
        )
        print(f"  {row['case']:<6}{row['audio_s']:>5.1f} s audio  {cells}  "
              f"ratio {row['ratio']['after_stop']:.3f}")  # fmt: skip
    print("\nTTS: synthesize → first audio / → audio-stop")
    for row in report["tts"]:
        cells = "  ".join(
            f"{name} {t['first_audio_p50_ms']:.0f}/{t['total_p50_ms']:.0f}"
            for name, t in row["targets"].items()
        )
        print(f"  {row['case']:<6}{cells}  ratio {row['ratio']['first_audio']:.3f}"
              f"/{row['ratio']['total']:.3f}")  # fmt: skip
    s = report["summary"]
    print(f"\nsummary (geometric mean over cases): STT {s['stt_after_stop_ratio']:.3f}, "
          f"TTS first audio {s['tts_first_audio_ratio']:.3f}, "
          f"TTS total {s['tts_total_ratio']:.3f}")  # fmt: skip
    if report["errors"]:
        print(f"\n{len(report['errors'])} errors:")
        for e in report["errors"]:
            print(f"  {e['program']} {e['target']} {e['case']}: {e['error']}")


def _no_nan(value: Any) -> Any:
    """NaN (a ratio without a reference) as null: strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_nan(v) for v in value]
    return value


def _run(args: argparse.Namespace) -> int:
    async def main() -> dict[str, Any]:
        await wait_ready([u for u in (args.ours, args.stt_ref, args.tts_ref) if u], args.wait)
        return await run_wyoming_bench(args.ours, args.stt_ref, args.tts_ref, args.rounds,
                                       args.warmup, args.gap)  # fmt: skip

    report = asyncio.run(main())
    print_report(report)
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(_no_nan(report), indent=2, allow_nan=False) + "\n")
        print(f"\nwrote {path}", file=sys.stderr)
    return 1 if report["errors"] else 0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "bench-wyoming",
        help="STT/TTS latency of our Wyoming server vs reference Wyoming servers (ratios)",
    )
    p.add_argument("--ours", required=True, help="our Wyoming server, tcp://HOST:PORT")
    p.add_argument("--stt-ref", help="reference asr server (wyoming-faster-whisper), tcp://…")
    p.add_argument("--tts-ref", help="reference tts server (wyoming-piper), tcp://…")
    p.add_argument("--rounds", type=int, default=5, help="measured rounds (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="unmeasured rounds first (default 1)")
    p.add_argument(
        "--gap", type=float, default=0.3,
        help="idle seconds before each request, so the previous one's spinning worker threads "
        "(OpenMP, onnxruntime) do not weigh on the next target (default 0.3)",
    )  # fmt: skip
    p.add_argument("--wait", type=float, default=120, help="seconds to wait for the servers")
    p.add_argument("--json", help="write the report here")
    p.set_defaults(func=_run)
