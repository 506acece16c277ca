"""Does llama-server's --jinja (needed for tool calls) cost decode speed? Two llama-server
processes with the same flags but --jinja / --no-jinja, both up at once, measured in turn
(ABAB…, so the machine's load falls on both alike): decode tok/s as llama-server itself reports
it (`timings.predicted_per_second`) for the same chat request with a fixed reply length
(`ignore_eos`), greedy; and the prompt's prefill rate. Jinja only renders the prompt: the
figures should match within noise.

usage: python3 bench/jinja_decode.py [--model GGUF] [--rounds 20] [--tokens 64] [--threads 1]
       [--json docs/results/cpu/jinja_decode.json]
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
MESSAGES = [
    {"role": "system", "content": "You are a helpful voice assistant."},
    {"role": "user", "content": "Tell me a long story about a lighthouse keeper and the sea."},
]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(
    binary: Path, model: Path, jinja: bool, threads: int, extra: list[str], log: Path
) -> tuple[Any, str]:
    port = _free_port()
    # the llamacpp role's flags that matter on one machine, -np 1: one stream measured
    cmd = [
        str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(port),
        "-c", "2048", "-np", "1", "-b", "512", "-ub", "256", "-fa", "on", "-t", str(threads),
        "--cache-ram", "0", "--no-webui", "--jinja" if jinja else "--no-jinja", *extra,
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/health", timeout=120, proc=proc)
    return proc, url


def _decode(client: httpx.Client, url: str, tokens: int) -> tuple[float, float]:
    body = {
        "messages": MESSAGES, "max_tokens": tokens, "temperature": 0, "ignore_eos": True,
        "cache_prompt": False,  # every request prefills, so both measure the same work
    }  # fmt: skip
    r = client.post(f"{url}/v1/chat/completions", json=body)
    r.raise_for_status()
    timings = r.json()["timings"]
    if timings["predicted_n"] != tokens:
        raise RuntimeError(f"{url} decoded {timings['predicted_n']} tokens, not {tokens}")
    return float(timings["predicted_per_second"]), float(timings["prompt_per_second"])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", type=Path, help="GGUF (default: the installed test model)")
    p.add_argument("--binary", type=Path, default=VF_HOME / "llama.cpp/cpu/bin/llama-server")
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--tokens", type=int, default=64)
    # 1: on a shared, busy CPU, threads that wait for each other slow decode far more
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--extra-args", default="", help="more llama-server flags, e.g. '-ngl 99'")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    model = args.model or sorted((VF_HOME / "models/current/llm").glob("*.gguf"))[0]
    logs = Path(os.environ.get("TMPDIR", "/tmp"))
    servers = {}
    try:
        for name, jinja in (("jinja", True), ("no_jinja", False)):
            log = logs / f"jinja-bench-{name}.log"
            extra = args.extra_args.split()
            servers[name] = _start(args.binary, model, jinja, args.threads, extra, log)
        decode: dict[str, list[float]] = {name: [] for name in servers}
        prefill: dict[str, list[float]] = {name: [] for name in servers}
        with httpx.Client(timeout=300) as client:
            for _name, (_, url) in servers.items():  # warm-up, not counted
                _decode(client, url, 8)
            for i in range(args.rounds):
                order = list(servers) if i % 2 == 0 else list(reversed(servers))
                for name in order:
                    tok_s, prompt_s = _decode(client, servers[name][1], args.tokens)
                    decode[name].append(tok_s)
                    prefill[name].append(prompt_s)
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(timeout=15)
    med = {name: statistics.median(v) for name, v in decode.items()}
    ratio = med["jinja"] / med["no_jinja"]
    # each round's two requests ran back to back: their ratio cancels most of the machine's
    # load swings, which a ratio of medians over a busy machine does not
    pairs = zip(decode["jinja"], decode["no_jinja"], strict=True)
    paired = statistics.median(j / n for j, n in pairs)
    report = {
        "model": model.name,
        "tokens": args.tokens,
        "rounds": args.rounds,
        "threads": args.threads,
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "loadavg": os.getloadavg(),
        },
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "decode_tok_s": decode,
        "decode_tok_s_median": med,
        "prefill_tok_s_median": {name: statistics.median(v) for name, v in prefill.items()},
        "jinja_over_no_jinja_decode": round(ratio, 4),
        "jinja_over_no_jinja_decode_paired_median": round(paired, 4),
    }
    print(f"{model.name}: {args.rounds} rounds x {args.tokens} tokens, -t {args.threads}")
    for name in servers:
        spread = f"{min(decode[name]):.1f}-{max(decode[name]):.1f}"
        print(f"  {name:9s} decode {med[name]:7.1f} tok/s median ({spread})")
    print(f"  --jinja / --no-jinja decode: {ratio:.3f} (medians), {paired:.3f} (per-round pairs)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
