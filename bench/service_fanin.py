"""What the service itself costs when 8 requests arrive at once: CPU per streamed request, and
how much later the last of a burst reaches the upstream than it would directly.

The upstream is a stand-in for llama-server that answers every chat request the same way
(first token after 20 ms, 8 tokens 5 ms apart, chunked SSE, the connection closed after each
answer as llama-server does): on a CPU machine the real llama-server's prefill (seconds)
buries the ~1 ms this measures, and on a GPU box the same figure shows up as the service's
added first-token time at 8 clients (docs/benchmarks.md). `voicefleet serve` runs in front of
it (LLM only), as a unit runs it. One client, interleaved bursts: direct, through the service.

usage: python3 bench/service_fanin.py [--bursts 40] [--json docs/results/cpu/service_fanin.json]
"""

from __future__ import annotations

import argparse
import asyncio
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
KEY = "fanin-bench-key-0123456789"
TOKENS, FIRST_TOKEN_S, TOKEN_GAP_S = 8, 0.020, 0.005


async def _upstream(port: int) -> None:
    """The stand-in: GET /health, GET /arrivals (and reset), POST anything -> SSE answer."""
    arrivals: list[float] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    await reader.readexactly(int(line.split(b":")[1]))
            path = head.split(b" ", 2)[1]
            if path in (b"/health", b"/arrivals"):
                body = b'{"status":"ok"}' if path == b"/health" else json.dumps(arrivals).encode()
                arrivals.clear() if path == b"/arrivals" else None
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                return
            arrivals.append(time.time())
            await asyncio.sleep(FIRST_TOKEN_S)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n")  # fmt: skip
            for i in range(TOKENS):
                event = {"choices": [{"index": 0, "delta": {"content": f" w{i}"}}]}
                data = b"data: " + json.dumps(event).encode() + b"\n\n"
                writer.write(b"%x\r\n%s\r\n" % (len(data), data))
                await writer.drain()
                await asyncio.sleep(TOKEN_GAP_S)
            done = {"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}],
                    "usage": {"prompt_tokens": 500, "completion_tokens": TOKENS}}  # fmt: skip
            data = b"data: " + json.dumps(done).encode() + b"\n\ndata: [DONE]\n\n"
            writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data))
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_ms(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


async def _bursts(up: str, svc: str, pid: int, bursts: int) -> dict[str, Any]:
    from app.bench.followup import ASK, SYSTEM

    spread: dict[str, list[float]] = {"direct": [], "service": []}
    last: dict[str, list[float]] = {"direct": [], "service": []}
    cpu = 0.0
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as c:

        async def one(url: str, i: int) -> None:
            body = {"model": "llm", "max_tokens": TOKENS, "stream": True,
                    "messages": [{"role": "system", "content": SYSTEM},
                                 {"role": "user", "content": f"{i} {ASK}"}]}  # fmt: skip
            async with c.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
                assert r.status_code == 200, await r.aread()
                async for _ in r.aiter_lines():
                    pass

        for _ in range(bursts):
            for name, url in (("direct", up), ("service", svc)):
                before = _cpu_ms(pid)
                t0 = time.time()
                await asyncio.gather(*(one(url, i) for i in range(8)))
                if name == "service":
                    cpu += _cpu_ms(pid) - before
                arrived = sorted((await c.get(f"{up}/arrivals")).json())
                if len(arrived) != 8:
                    raise SystemExit(f"{name}: {len(arrived)} of 8 requests reached the upstream")
                last[name].append((arrived[-1] - t0) * 1000)
                spread[name].append((arrived[-1] - arrived[0]) * 1000)
    p50 = {k: round(statistics.median(v), 2) for k, v in last.items()}
    return {
        "bursts": bursts,
        "requests_per_burst": 8,
        "service_cpu_ms_per_request": round(cpu / (8 * bursts), 3),
        "last_arrival_p50_ms": p50,
        "arrival_spread_p50_ms": {k: round(statistics.median(v), 2) for k, v in spread.items()},
        "service_delay_of_last_p50_ms": round(p50["service"] - p50["direct"], 2),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bursts", type=int, default=40)
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--upstream", type=int, help=argparse.SUPPRESS)  # internal: serve it
    a = ap.parse_args()
    if a.upstream:
        asyncio.run(_upstream(a.upstream))
        return 0
    up_port, svc_port = _free_port(), _free_port()
    up_url, svc_url = f"http://127.0.0.1:{up_port}", f"http://127.0.0.1:{svc_port}"
    env = {**os.environ, "VOICEFLEET_SERVER__API_KEY": KEY, "VOICEFLEET_STT__ENABLED": "false",
           "VOICEFLEET_TTS__ENABLED": "false", "VOICEFLEET_LLM__BACKEND": "server",
           "VOICEFLEET_LLM__SERVER_URL": up_url, "VOICEFLEET_LLM__MODEL_NAME": "llm"}  # fmt: skip
    sys.path.insert(0, str(ROOT))
    from app.bench.waiting import wait_http

    procs = [subprocess.Popen([sys.executable, __file__, "--upstream", str(up_port)])]
    try:
        wait_http(f"{up_url}/health", timeout=30, proc=procs[0])
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(svc_port)], cwd=ROOT,
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))  # fmt: skip
        wait_http(f"{svc_url}/readyz", timeout=30, proc=procs[1])
        figures = asyncio.run(_bursts(up_url, svc_url, procs[1].pid, a.bursts))
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
    report = {"tool": "bench/service_fanin.py", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ",
              time.gmtime()), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
              "python": platform.python_version(), **figures}  # fmt: skip
    print(json.dumps(report, indent=2))
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
