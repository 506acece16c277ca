"""Voice turns against /v1/voice: speech in -> speech out, timed per stage."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from app.bench.load import percentile, served_models

UTTERANCE = "What will the weather be like tomorrow morning?"
STAGES = ("stt_ms", "llm_ttft_ms", "llm_total_ms", "tts_ms", "total_ms")


async def make_utterance(client: httpx.AsyncClient, text: str = UTTERANCE) -> bytes:
    """A real utterance, spoken by the unit's own TTS."""
    tts = (await served_models(client))["tts"]
    resp = await client.post(
        "/v1/audio/speech", json={"model": tts, "input": text, "response_format": "wav"}
    )
    resp.raise_for_status()
    return resp.content


async def voice_turn(client: httpx.AsyncClient, audio: bytes, max_tokens: int) -> dict[str, Any]:
    resp = await client.post(
        "/v1/voice",
        files={"file": ("utterance.wav", audio, "audio/wav")},
        data={"response_format": "json", "max_tokens": str(max_tokens), "temperature": "0"},
    )
    if resp.status_code != 200:
        return {"ok": False, "error": f"HTTP {resp.status_code}: {resp.text[:200]}"}
    body = resp.json()
    return {"ok": True, "transcript": body["transcript"], "reply": body["reply"], **body["timings"]}


async def run_voice(
    url: str, api_key: str | None, clients: int, turns_per_client: int, max_tokens: int
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    async with httpx.AsyncClient(base_url=url.rstrip("/"), headers=headers, timeout=300) as c:
        audio = await make_utterance(c)

        async def worker() -> list[dict[str, Any]]:
            return [await voice_turn(c, audio, max_tokens) for _ in range(turns_per_client)]

        per_worker = await asyncio.gather(*(worker() for _ in range(clients)))
    turns = [t for ts in per_worker for t in ts]
    ok = [t for t in turns if t["ok"]]
    summary: dict[str, Any] = {
        "clients": clients,
        "turns": len(turns),
        "errors": len(turns) - len(ok),
        "error_samples": [t["error"] for t in turns if not t["ok"]][:3],
        "transcript_sample": ok[0]["transcript"] if ok else "",
        "reply_sample": ok[0]["reply"] if ok else "",
    }
    for stage in STAGES:
        values = [float(t[stage]) for t in ok]
        summary[f"{stage}_p50"] = round(percentile(values, 0.5), 1)
        summary[f"{stage}_p95"] = round(percentile(values, 0.95), 1)
    return summary
