"""What the service itself costs when 8 requests arrive at once: CPU per streamed request, and
how much later the last of a burst reaches the upstream than it would directly, for the
service's llama-server client now and at an earlier revision, in one run.

The upstream is a stand-in for llama-server that answers every chat request the same way
(first token after 20 ms, 8 tokens 5 ms apart, chunked SSE) and keeps connections alive as the
pinned llama-server does (`Keep-Alive: timeout=5, max=100`; closed on `Connection: close`,
after 100 requests or 5 s idle): on a CPU machine the real llama-server's prefill (seconds)
buries the ~1 ms this measures, and on a GPU box the same figure shows up as the service's
added first-token time at 8 clients (docs/benchmarks.md). `voicefleet serve` runs in front of
it (LLM only), as a unit runs it: this tree's, and the `--before` revision's (its app/ taken
with `git archive`, run on the same venv). One client, interleaved bursts: direct, before,
now. The upstream counts the connections it accepted for each.

usage: python3 bench/service_fanin.py [--bursts 40] [--before REV]
                                      [--json docs/results/cpu/service_fanin.json]
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
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
KEY = "fanin-bench-key-0123456789"
TOKENS, FIRST_TOKEN_S, TOKEN_GAP_S = 8, 0.020, 0.005
# llama-server's (cpp-httplib's) keep-alive: CPPHTTPLIB_KEEPALIVE_TIMEOUT_SECOND / _MAX_COUNT
KEEPALIVE_S, KEEPALIVE_MAX = 5.0, 100
# the last revision whose llama-server client was app/engines/http1.py (one connection per
# request, `Connection: close`)
BEFORE = "e606c02"


async def _answer(writer: asyncio.StreamWriter, close: bool) -> None:
    connection = b"Connection: close" if close else b"Keep-Alive: timeout=5, max=100"
    await asyncio.sleep(FIRST_TOKEN_S)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n%s\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n" % connection)  # fmt: skip
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


async def _upstream(port: int) -> None:
    """The stand-in: GET /health, GET /arrivals (chat arrivals and connections accepted since
    the last call), POST anything -> SSE answer; connections kept alive as llama-server's."""
    arrivals: list[float] = []
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        try:
            for served in range(1, KEEPALIVE_MAX + 1):
                try:
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), KEEPALIVE_S)
                except TimeoutError:
                    return  # idle for 5 s: llama-server closes
                close = served == KEEPALIVE_MAX
                for line in head.lower().split(b"\r\n"):
                    if line.startswith(b"content-length:"):
                        await reader.readexactly(int(line.split(b":")[1]))
                    close |= line.startswith(b"connection:") and b"close" in line
                path = head.split(b" ", 2)[1]
                if path in (b"/health", b"/arrivals"):
                    report = {"arrivals": arrivals[:], "connections": connections}
                    body = b'{"status":"ok"}' if path == b"/health" else json.dumps(report).encode()
                    if path == b"/arrivals":
                        arrivals.clear()
                        connections = 0
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n\r\n%s" % (
                        len(body), b"Connection: close" if close else b"Keep-Alive: timeout=5",
                        body))  # fmt: skip
                    await writer.drain()
                else:
                    arrivals.append(time.time())
                    await _answer(writer, close)
                if close:
                    return
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


async def _bursts(up: str, services: dict[str, tuple[str, int]], bursts: int) -> dict[str, Any]:
    from app.bench.followup import ASK, SYSTEM

    targets = {"direct": (up, 0), **services}
    spread: dict[str, list[float]] = {name: [] for name in targets}
    last: dict[str, list[float]] = {name: [] for name in targets}
    cpu = dict.fromkeys(services, 0.0)
    connections = dict.fromkeys(targets, 0)
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as c:

        async def one(url: str, i: int) -> None:
            body = {"model": "llm", "max_tokens": TOKENS, "stream": True,
                    "messages": [{"role": "system", "content": SYSTEM},
                                 {"role": "user", "content": f"{i} {ASK}"}]}  # fmt: skip
            async with c.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
                assert r.status_code == 200, await r.aread()
                async for _ in r.aiter_lines():
                    pass

        await c.get(f"{up}/arrivals")  # reset what the readiness probes counted
        for _ in range(bursts):
            for name, (url, pid) in targets.items():
                before = _cpu_ms(pid) if pid else 0.0
                t0 = time.time()
                await asyncio.gather(*(one(url, i) for i in range(8)))
                if pid:
                    cpu[name] += _cpu_ms(pid) - before
                seen = (await c.get(f"{up}/arrivals")).json()
                arrived = sorted(seen["arrivals"])
                if len(arrived) != 8:
                    raise SystemExit(f"{name}: {len(arrived)} of 8 requests reached the upstream")
                connections[name] += seen["connections"]
                last[name].append((arrived[-1] - t0) * 1000)
                spread[name].append((arrived[-1] - arrived[0]) * 1000)
    p50 = {k: round(statistics.median(v), 2) for k, v in last.items()}
    return {
        "bursts": bursts,
        "requests_per_burst": 8,
        "service_cpu_ms_per_request": {k: round(v / (8 * bursts), 3) for k, v in cpu.items()},
        "last_arrival_p50_ms": p50,
        "arrival_spread_p50_ms": {k: round(statistics.median(v), 2) for k, v in spread.items()},
        "service_delay_of_last_p50_ms": {k: round(p50[k] - p50["direct"], 2) for k in services},
        # connections the upstream accepted per target over the run (the bench's own client
        # for direct; each service's llama-server client otherwise)
        "upstream_connections": connections,
    }


def _client_only(up: str, bursts: int) -> None:
    """Run in a subprocess whose PYTHONPATH is one tree: that tree's LlamaServerLLM alone
    (no FastAPI, no client-facing SSE) streams `bursts` x 8 answers from the upstream under
    uvloop, as the service runs; prints this process's CPU ms per streamed request."""
    import uvloop

    from app.engines.base import ChatParams
    from app.engines.llm_server import LlamaServerLLM
    from app.settings import LLMSettings

    llm = LlamaServerLLM(LLMSettings(backend="server", server_url=up, model_name="llm"))
    messages = [{"role": "user", "content": "hi"}]

    async def one() -> None:
        async for _ in llm.stream(messages, ChatParams(max_tokens=TOKENS)):
            pass

    async def run() -> float:
        await asyncio.gather(*(one() for _ in range(8)))  # warm-up (and the pool)
        start = time.process_time()
        for _ in range(bursts):
            await asyncio.gather(*(one() for _ in range(8)))
        used = time.process_time() - start
        await llm.aclose()
        return used

    print(json.dumps({"cpu_ms_per_request": round(uvloop.run(run()) * 1000 / (8 * bursts), 3)}))


def _client_cpu(up: str, trees: dict[str, Path], bursts: int, rounds: int) -> dict[str, Any]:
    """The LLM client's own CPU per streamed request, each tree in turn, `rounds` times."""
    runs: dict[str, list[float]] = {name: [] for name in trees}
    for _ in range(rounds):
        for name, tree in trees.items():
            out = subprocess.run(
                [sys.executable, __file__, "--client-only", up, "--bursts", str(bursts)],
                cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)}, check=True,
                capture_output=True, text=True,
            ).stdout  # fmt: skip
            runs[name].append(json.loads(out)["cpu_ms_per_request"])
    return {"rounds": rounds, "cpu_ms_per_request_p50": {
        k: round(statistics.median(v), 3) for k, v in runs.items()}, "runs": runs}  # fmt: skip


def _checkout(rev: str, into: Path) -> str:
    """The revision's app/ under `into`; returns the commit it resolved to."""
    commit = subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout.strip()  # fmt: skip
    archive = subprocess.run(["git", "archive", commit, "app"], cwd=ROOT, check=True,
                             capture_output=True).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return commit


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bursts", type=int, default=40)
    ap.add_argument("--before", default=BEFORE, help=f"the earlier revision (default {BEFORE})")
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--client-rounds", type=int, default=5)
    ap.add_argument("--upstream", type=int, help=argparse.SUPPRESS)  # internal: serve it
    ap.add_argument("--client-only", help=argparse.SUPPRESS)  # internal: one tree's client
    a = ap.parse_args()
    if a.upstream:
        asyncio.run(_upstream(a.upstream))
        return 0
    if a.client_only:
        _client_only(a.client_only, a.bursts)
        return 0
    up_port = _free_port()
    up_url = f"http://127.0.0.1:{up_port}"
    env = {**os.environ, "VOICEFLEET_SERVER__API_KEY": KEY, "VOICEFLEET_STT__ENABLED": "false",
           "VOICEFLEET_TTS__ENABLED": "false", "VOICEFLEET_LLM__BACKEND": "server",
           "VOICEFLEET_LLM__SERVER_URL": up_url, "VOICEFLEET_LLM__MODEL_NAME": "llm"}  # fmt: skip
    sys.path.insert(0, str(ROOT))
    from app.bench.waiting import wait_http

    procs = [subprocess.Popen([sys.executable, __file__, "--upstream", str(up_port)])]
    with tempfile.TemporaryDirectory() as old_tree:
        before = _checkout(a.before, Path(old_tree))
        trees = {f"before ({before})": Path(old_tree), "now": ROOT}
        services: dict[str, tuple[str, int]] = {}
        try:
            wait_http(f"{up_url}/health", timeout=30, proc=procs[0])
            for name, tree in trees.items():
                port = _free_port()
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "app.cli", "serve", "--port", str(port)], cwd=tree,
                    env={**env, "PYTHONPATH": str(tree)}, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                ))  # fmt: skip
                wait_http(f"http://127.0.0.1:{port}/readyz", timeout=30, proc=procs[-1])
                services[name] = (f"http://127.0.0.1:{port}", procs[-1].pid)
            figures = asyncio.run(_bursts(up_url, services, a.bursts))
            for p in procs[1:]:
                p.terminate()  # the client-only runs have the machine to themselves
            figures["llm_client_only"] = _client_cpu(up_url, trees, a.bursts, a.client_rounds)
        finally:
            for p in procs:
                p.terminate()
                p.wait(10)
    report = {"tool": "bench/service_fanin.py", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ",
              time.gmtime()), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
              "python": platform.python_version(), "upstream": "keeps connections alive "
              "(Keep-Alive: timeout=5, max=100), as the pinned llama-server",
              "before": f"{before}: app/engines/http1.py, a connection per request"
              if a.before == BEFORE else f"{before} (--before)",
              "now": "this tree (app/engines/llama_http.py, pooled aiohttp)",
              **figures}  # fmt: skip
    print(json.dumps(report, indent=2))
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
