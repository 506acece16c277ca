"""Streaming chat load against any OpenAI-compatible endpoint (the service or llama-server).

The same client code measures both, so their ratio is fair: TTFT (request sent -> first
content token), per-stream tok/s (tokens / request time), and the aggregate tok/s of all
clients together (tokens / wall time).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

# A fixed, neutral prompt; the reply length is bounded by max_tokens, not by the text.
PROMPT = (
    "You are a voice assistant in a kitchen. A user asks: what can I cook tonight with "
    "rice, eggs, spinach and a little cheese? Answer with a friendly suggestion and the steps."
)


@dataclass
class RequestResult:
    ok: bool
    ttft_s: float = 0.0
    total_s: float = 0.0
    tokens: int = 0
    prompt_tokens: int = 0
    text: str = ""
    error: str = ""
    # llama-server's own account (its final chunk's `timings`; absent through the service):
    # tokens it actually prefilled (cached ones excluded) and how long that took
    server_prompt_n: int | None = None
    server_prompt_ms: float | None = None

    @property
    def decode_tps(self) -> float:
        """Tokens per second of the whole stream, first token included.

        (tokens - 1) / (last - first token) reads absurd figures when a loaded host delivers
        a short reply in one burst (measured: 13,205 tok/s for 32 tokens); counting from the
        request makes the figure conservative by the first-token time, never inflated."""
        return self.tokens / self.total_s if self.tokens and self.total_s > 0 else 0.0


@dataclass
class LoadResult:
    target: str
    clients: int
    requests: int
    errors: int
    wall_s: float
    ttft_p50_ms: float
    ttft_p95_ms: float
    stream_tps_p50: float
    aggregate_tps: float
    tokens: int
    error_samples: list[str] = field(default_factory=list)
    # every successful request's TTFT (the distribution plots use them)
    ttft_ms: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def served_models(client: httpx.AsyncClient) -> dict[str, str]:
    """kind (llm, stt, tts) -> model id, from the service's /v1/models."""
    resp = await client.get("/v1/models")
    resp.raise_for_status()
    models = [m for m in resp.json()["data"] if "alias_of" not in m]
    return {m.get("kind", "llm"): m["id"] for m in models}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


async def one_request(
    client: httpx.AsyncClient,
    model: str,
    max_tokens: int,
    prompt: str = PROMPT,
    *,
    messages: list[dict[str, str]] | None = None,
    extra: dict[str, Any] | None = None,
) -> RequestResult:
    """One streamed chat request; `messages` replaces the single-prompt conversation and
    `extra` adds fields to the body (e.g. llama-server's cache_prompt)."""
    payload = {
        "model": model,
        "messages": messages or [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "stream": True,
        "stream_options": {"include_usage": True},
        **(extra or {}),
    }
    start = time.perf_counter()
    ttft = 0.0
    parts: list[str] = []
    usage: dict[str, Any] = {}
    timings: dict[str, Any] = {}
    try:
        async with client.stream("POST", "/v1/chat/completions", json=payload) as resp:
            if resp.status_code != 200:
                body = (await resp.aread()).decode(errors="replace")[:200]
                return RequestResult(ok=False, error=f"HTTP {resp.status_code}: {body}")
            async for line in resp.aiter_lines():
                if line == "data: [DONE]":
                    break
                if not line.startswith("data: "):
                    continue
                event = json.loads(line[6:])
                if "error" in event:
                    return RequestResult(ok=False, error=str(event["error"])[:200])
                usage = event.get("usage") or usage
                timings = event.get("timings") or timings
                for choice in event.get("choices", []):
                    content = (choice.get("delta") or {}).get("content")
                    if content:
                        parts.append(content)
                        if len(parts) == 1:
                            ttft = time.perf_counter() - start
    except httpx.HTTPError as exc:
        return RequestResult(ok=False, error=repr(exc)[:200])
    total = time.perf_counter() - start
    if not parts:
        return RequestResult(ok=False, total_s=total, error="no tokens in the reply")
    return RequestResult(
        ok=True,
        ttft_s=ttft,
        total_s=total,
        tokens=int(usage.get("completion_tokens", 0)) or len(parts),
        prompt_tokens=int(usage.get("prompt_tokens", 0)),
        text="".join(parts),
        server_prompt_n=_int_or_none(timings.get("prompt_n")),
        server_prompt_ms=_float_or_none(timings.get("prompt_ms")),
    )


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) else None


def _float_or_none(value: Any) -> float | None:
    return round(float(value), 2) if isinstance(value, int | float) else None


async def run_load(
    target: str,
    url: str,
    api_key: str | None,
    model: str,
    clients: int,
    requests_per_client: int,
    max_tokens: int,
) -> LoadResult:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    limits = httpx.Limits(max_connections=clients + 2)
    async with httpx.AsyncClient(
        base_url=url.rstrip("/"), headers=headers, timeout=300, limits=limits
    ) as client:

        async def worker() -> list[RequestResult]:
            return [
                await one_request(client, model, max_tokens) for _ in range(requests_per_client)
            ]

        start = time.perf_counter()
        per_worker = await asyncio.gather(*(worker() for _ in range(clients)))
        wall = time.perf_counter() - start
    results = [r for rs in per_worker for r in rs]
    ok = [r for r in results if r.ok]
    tokens = sum(r.tokens for r in ok)
    return LoadResult(
        target=target,
        clients=clients,
        requests=len(results),
        errors=len(results) - len(ok),
        wall_s=round(wall, 3),
        ttft_p50_ms=round(percentile([r.ttft_s for r in ok], 0.5) * 1000, 1),
        ttft_p95_ms=round(percentile([r.ttft_s for r in ok], 0.95) * 1000, 1),
        stream_tps_p50=round(statistics.median([r.decode_tps for r in ok]) if ok else 0.0, 2),
        aggregate_tps=round(tokens / wall if wall > 0 else 0.0, 2),
        tokens=tokens,
        error_samples=[r.error for r in results if not r.ok][:3],
        ttft_ms=[round(r.ttft_s * 1000, 1) for r in ok],
    )
