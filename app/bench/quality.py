"""Quality smoke checks after a deploy: fast, and a broken model or pipeline fails them.

- the LLM answers a simple factual question with a plausible reply (the expected word in it);
- speech round trip: the unit's TTS speaks a sentence, its STT transcribes it back, and the
  transcript contains (most of) the words.
"""

from __future__ import annotations

import re
from typing import Any

import httpx

from app.bench.load import served_models

QUESTION = "What is the capital of France? Answer with one word."
EXPECTED = "paris"
SENTENCE = "The quick brown fox jumps over the lazy dog."
MIN_WORDS_FRACTION = 0.8


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def word_recall(expected: str, heard: str) -> float:
    want = words(expected)
    got = set(words(heard))
    return sum(w in got for w in want) / len(want) if want else 0.0


async def check_llm(client: httpx.AsyncClient, model: str) -> dict[str, Any]:
    resp = await client.post(
        "/v1/chat/completions",
        json={
            "model": model,
            "messages": [{"role": "user", "content": QUESTION}],
            "max_tokens": 24,
            "temperature": 0,
        },
    )
    if resp.status_code != 200:
        return {"name": "llm_answer", "passed": False, "detail": f"HTTP {resp.status_code}"}
    reply = str(resp.json()["choices"][0]["message"]["content"]).strip()
    ok = EXPECTED in reply.lower()
    detail = f"asked {QUESTION!r}, got {reply[:80]!r}" + ("" if ok else f" (no {EXPECTED!r})")
    return {"name": "llm_answer", "passed": ok, "detail": detail}


async def check_speech_round_trip(
    client: httpx.AsyncClient, models: dict[str, str]
) -> dict[str, Any]:
    speech = await client.post(
        "/v1/audio/speech",
        json={"model": models["tts"], "input": SENTENCE, "response_format": "wav"},
    )
    if speech.status_code != 200:
        return {
            "name": "speech_round_trip",
            "passed": False,
            "detail": f"TTS HTTP {speech.status_code}",
        }
    text = await client.post(
        "/v1/audio/transcriptions",
        files={"file": ("speech.wav", speech.content, "audio/wav")},
        data={"model": models["stt"], "response_format": "json"},
    )
    if text.status_code != 200:
        return {
            "name": "speech_round_trip",
            "passed": False,
            "detail": f"STT HTTP {text.status_code}",
        }
    heard = str(text.json()["text"]).strip()
    recall = word_recall(SENTENCE, heard)
    ok = recall >= MIN_WORDS_FRACTION
    detail = f"said {SENTENCE!r}, heard {heard[:80]!r}: {recall:.0%} of the words"
    return {"name": "speech_round_trip", "passed": ok, "detail": detail, "recall": round(recall, 3)}


async def run_quality(url: str, api_key: str | None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    async with httpx.AsyncClient(base_url=url.rstrip("/"), headers=headers, timeout=120) as c:
        try:
            models = await served_models(c)
            checks = [await check_llm(c, models["llm"]), await check_speech_round_trip(c, models)]
        except (httpx.HTTPError, KeyError) as exc:
            checks = [{"name": "service", "passed": False, "detail": repr(exc)[:200]}]
    return {"passed": all(q["passed"] for q in checks), "checks": checks}
