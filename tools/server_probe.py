"""Probe a running llama-server: a long prompt is accepted, then N concurrent clients.

Prints JSON with the single long-prompt check (prompt tokens, HTTP status) and, for the
concurrent run, per-client TTFT (first streamed token) and aggregate decode tok/s.
Used by tools/gpu_bench.sh; stdlib only (runs with any python3).

usage: python3 server_probe.py URL [--clients 8] [--prompt-words 400] [--n-predict 128]
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any


def post(url: str, body: dict[str, Any], timeout: float = 300) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def stream_completion(url: str, prompt: str, n_predict: int, out: dict[str, Any]) -> None:
    body = {
        "prompt": prompt,
        "n_predict": n_predict,
        "stream": True,
        "cache_prompt": False,
        "ignore_eos": True,
        "temperature": 0,
    }
    req = urllib.request.Request(
        url + "/completion",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    start = time.perf_counter()
    tokens = 0
    with urllib.request.urlopen(req, timeout=600) as resp:
        for raw in resp:
            line = raw.decode().strip()
            if not line.startswith("data:"):
                continue
            event = json.loads(line[5:])
            if tokens == 0:
                out["ttft_ms"] = (time.perf_counter() - start) * 1000
            tokens += 1
            if event.get("stop"):
                out["timings"] = event.get("timings", {})
                break
    out["wall_s"] = time.perf_counter() - start
    out["tokens"] = tokens


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--prompt-words", type=int, default=400)
    ap.add_argument("--n-predict", type=int, default=128)
    a = ap.parse_args()

    prompt = " ".join(f"w{i}" for i in range(a.prompt_words))
    status, tok = post(a.url + "/tokenize", {"content": prompt})
    n_prompt = len(tok.get("tokens", []))
    status, single = post(
        a.url + "/completion", {"prompt": prompt, "n_predict": 8, "cache_prompt": False}
    )
    result: dict[str, Any] = {
        "long_prompt": {
            "prompt_tokens": n_prompt,
            "http_status": status,
            "error": single.get("error"),
        },
    }
    outs: list[dict[str, Any]] = [{} for _ in range(a.clients)]
    threads = [
        threading.Thread(
            target=stream_completion, args=(a.url, f"c{i} " + prompt, a.n_predict, outs[i])
        )
        for i in range(a.clients)
    ]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    ttfts = sorted(o.get("ttft_ms", float("nan")) for o in outs)
    total_tokens = sum(o.get("tokens", 0) for o in outs)
    result["concurrent"] = {
        "clients": a.clients,
        "prompt_tokens_each": n_prompt,
        "n_predict": a.n_predict,
        "ttft_ms_min": round(ttfts[0], 1),
        "ttft_ms_median": round(ttfts[len(ttfts) // 2], 1),
        "ttft_ms_max": round(ttfts[-1], 1),
        "aggregate_tok_s": round(total_tokens / wall, 1),
        "per_client_decode_tok_s": [
            round(o.get("timings", {}).get("predicted_per_second", 0.0), 1) for o in outs
        ],
        "wall_s": round(wall, 2),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
