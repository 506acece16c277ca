"""First audio of /v1/audio/speech per response format: does encoding (mp3, opus via PyAV)
delay the first audio a client receives, against streamed wav?

A 3-sentence input, streamed (OpenAI's `client.audio.speech.with_streaming_response`): the
time from sending the request to the first body bytes, and to the last, per format, formats
interleaved round by round (the machine's load falls on all alike); medians and the
ratios to wav. Against --url, or (default) a `voicefleet serve` it starts with the installed
test voice (LLM and STT off: speech only).

usage: python3 bench/speech_formats.py [--url URL --api-key KEY] [--rounds 10]
       [--json docs/results/cpu/speech_formats.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.bench.waiting import wait_http  # noqa: E402

VF_HOME = Path(os.environ.get("VOICEFLEET_HOME", Path.home() / ".cache" / "voicefleet"))
KEY = "speech-bench-key-0123456789"
TEXT = (
    "The weather tomorrow will be sunny and warm. "
    "A light breeze comes in from the west in the afternoon. "
    "In the evening, clouds gather over the hills."
)
FORMATS = ("wav", "mp3", "opus", "aac", "flac")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve() -> tuple[subprocess.Popen[bytes], str]:
    voice = sorted((VF_HOME / "models/current/tts").glob("*.onnx"))[0]
    port = _free_port()
    env = {
        **os.environ, "VOICEFLEET_SERVER__API_KEY": KEY, "VOICEFLEET_STT__ENABLED": "false",
        "VOICEFLEET_TTS__VOICE_PATH": str(voice), "VOICEFLEET_LLM__BACKEND": "server",
        # no LLM is asked: speech only (the service's /readyz stays 503 for the LLM)
        "VOICEFLEET_LLM__SERVER_URL": f"http://127.0.0.1:{_free_port()}",
    }  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port)], cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/healthz", timeout=120, proc=proc)
    return proc, url


def _speak(client: httpx.Client, fmt: str) -> tuple[float, float, int]:
    body = {"model": "tts-1", "voice": "alloy", "input": TEXT, "response_format": fmt}
    start = time.perf_counter()
    first: float | None = None
    size = 0
    with client.stream("POST", "/v1/audio/speech", json=body) as r:
        r.raise_for_status()
        for chunk in r.iter_raw():
            if chunk and first is None:
                first = time.perf_counter() - start
            size += len(chunk)
    total = time.perf_counter() - start
    assert first is not None, f"{fmt}: no audio"
    return first, total, size


def _wait_for_voice(client: httpx.Client, timeout_s: float = 120.0) -> None:
    """/healthz answers before the voice is loaded (503 engine loading until then)."""
    deadline = time.monotonic() + timeout_s
    while True:
        r = client.post(
            "/v1/audio/speech", json={"model": "tts-1", "input": "Hi.", "response_format": "pcm"}
        )
        if r.status_code != 503 or time.monotonic() > deadline:
            r.raise_for_status()
            return
        time.sleep(0.5)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--url", help="a running service (default: start one with the test voice)")
    p.add_argument("--api-key", default=os.environ.get("VOICEFLEET_API_KEY"))
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    proc = None
    url, key = args.url, args.api_key
    if url is None:
        proc, url = _serve()
        key = KEY
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    first: dict[str, list[float]] = {f: [] for f in FORMATS}
    total: dict[str, list[float]] = {f: [] for f in FORMATS}
    sizes: dict[str, int] = {}
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
            _wait_for_voice(client)
            for fmt in FORMATS:  # warm-up: the first synthesis and encoder loads
                _speak(client, fmt)
            for i in range(args.rounds):
                order = FORMATS if i % 2 == 0 else tuple(reversed(FORMATS))
                for fmt in order:
                    f, t, sizes[fmt] = _speak(client, fmt)
                    first[fmt].append(f)
                    total[fmt].append(t)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=15)
    first_ms = {f: round(statistics.median(v) * 1000, 1) for f, v in first.items()}
    total_ms = {f: round(statistics.median(v) * 1000, 1) for f, v in total.items()}
    ratios = {f: round(first_ms[f] / first_ms["wav"], 3) for f in FORMATS}
    report: dict[str, Any] = {
        "text": TEXT,
        "rounds": args.rounds,
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "loadavg": os.getloadavg(),
        },
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "first_audio_ms": first,
        "first_audio_ms_median": first_ms,
        "total_ms_median": total_ms,
        "bytes": sizes,
        "first_audio_over_wav": ratios,
    }
    report["first_audio_ms"] = {f: [round(x * 1000, 1) for x in v] for f, v in first.items()}
    print(f"3 sentences, {args.rounds} rounds (medians):")
    print("  format  first audio ms  / wav   whole answer ms   bytes")
    for fmt in FORMATS:
        print(f"  {fmt:6s} {first_ms[fmt]:14.1f} {ratios[fmt]:6.3f} {total_ms[fmt]:17.1f} "
              f"{sizes[fmt]:7d}")  # fmt: skip
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
