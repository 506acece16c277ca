"""/v1/realtime with the real small models: turns, streamed replies, pauses, barge-in."""

from __future__ import annotations

import io
import wave

import httpx
import numpy as np
import pytest

from app.bench.pcm import PCM, silence, trim_silence, wav_pcm
from app.bench.rt_client import RealtimeClient
from tests.app.conftest import API_KEY, Service
from tests.conftest import LLAMA_API_KEY

pytestmark = pytest.mark.slow


def _speak(svc: Service, text: str) -> tuple[PCM, int]:
    with svc.client() as c:
        r = c.post(
            "/v1/audio/speech", json={"model": "piper", "input": text, "response_format": "wav"}
        )
        r.raise_for_status()
    pcm, rate = wav_pcm(r.content)
    return trim_silence(pcm, rate), rate


def _with_silence(pcm: PCM, rate: int, before: float = 0.3, after: float = 1.2) -> PCM:
    return np.concatenate([silence(rate, before), pcm, silence(rate, after)])


async def test_utterance_gives_transcript_reply_and_audio(
    server_service: Service, speech_wav: bytes
) -> None:
    pcm, rate = wav_pcm(speech_wav)
    rt = await RealtimeClient.open(server_service.url, API_KEY, sample_rate=rate)
    try:
        await rt.send_audio(_with_silence(trim_silence(pcm, rate), rate), rate, pace=1.0)
        done = await rt.wait_for("response.done", timeout_s=60)
        timings = (await rt.wait_for("turn.timings")).data
    finally:
        await rt.close()
    kinds = [e.data["type"] for e in rt.events]
    assert kinds.index("speech_started") < kinds.index("speech_stopped") < kinds.index("transcript")
    transcript = rt.of("transcript")[0].data
    assert "weather" in transcript["text"].lower()
    turn = transcript["turn"]
    deltas = "".join(e.data["delta"] for e in rt.of("response.text.delta", turn=turn))
    assert deltas.strip() and deltas == done.data["text"]
    audio = rt.audio[turn]
    out_rate = rt.of("session.created")[0].data["output_sample_rate"]
    # playable: whole int16 samples, at least a second of speech, not silence
    assert len(audio) % 2 == 0
    samples = np.frombuffer(bytes(audio), dtype="<i2")
    assert len(samples) / out_rate > 1.0
    assert np.abs(samples).max() > 1000
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(out_rate)
        w.writeframes(bytes(audio))
    with wave.open(io.BytesIO(buf.getvalue())) as w:
        assert w.getnframes() == len(samples)
    for key in ("vad_end_to_transcript_ms", "vad_end_to_llm_first_token_ms",
                "vad_end_to_first_audio_ms", "total_ms"):  # fmt: skip
        assert timings[key] > 0, key
    assert timings["vad_end_to_first_audio_ms"] <= timings["total_ms"]


async def test_pause_between_two_sentences_gives_one_reply(server_service: Service) -> None:
    first, rate = _speak(server_service, "Please turn on the kitchen lights.")
    second, _ = _speak(server_service, "And tell me what time it is.")
    audio = np.concatenate([first, silence(rate, 0.3), second])
    rt = await RealtimeClient.open(server_service.url, API_KEY, sample_rate=rate)
    try:
        await rt.send_audio(_with_silence(audio, rate), rate, pace=1.0)
        await rt.wait_for("response.done", timeout_s=60)
        await rt.send_audio(silence(rate, 1.0), rate, pace=0)  # anything else would show now
        await rt.wait_for("turn.timings")
    finally:
        await rt.close()
    transcripts = rt.of("transcript")
    assert len(transcripts) == 1, [e.data for e in transcripts]
    text = transcripts[0].data["text"].lower()
    assert "kitchen" in text and "time" in text
    assert len(rt.of("response.done")) == 1
    assert not rt.of("response.cancelled")


async def test_barge_in_cancels_the_reply_and_the_next_turn_works(
    server_service: Service, speech_wav: bytes
) -> None:
    pcm, rate = wav_pcm(speech_wav)
    pcm = trim_silence(pcm, rate)
    long_question, _ = _speak(server_service, "Tell me a long story about a dragon.")
    rt = await RealtimeClient.open(server_service.url, API_KEY, sample_rate=rate, max_tokens=200)
    try:
        await rt.send_audio(_with_silence(long_question, rate, after=0.8), rate, pace=0)
        first_audio = await rt.wait_for("response.audio", timeout_s=60)
        turn1 = first_audio.data["turn"]
        # the user talks over the reply
        await rt.send_audio(_with_silence(pcm, rate, before=0.0), rate, pace=1.0)
        cancelled = await rt.wait_for("response.cancelled", turn=turn1, timeout_s=30)
        assert cancelled.data["reason"] == "barge_in"
        transcript2 = await rt.wait_for("transcript", count=2, timeout_s=60)
        turn2 = transcript2.data["turn"]
        await rt.wait_for("response.done", turn=turn2, timeout_s=60)
    finally:
        await rt.close()
    assert "weather" in transcript2.data["text"].lower()
    assert not rt.of("response.done", turn=turn1)
    # nothing of turn 1 after its cancel event
    after = [e for e in rt.events if e.t > cancelled.t and e.data.get("turn") == turn1]
    assert not [e for e in after if e.data["type"] in ("response.audio", "response.text.delta")]
    assert rt.audio_after_cancel[turn1] == 0
    assert len(rt.audio[turn2]) > 0
    # llama-server stopped generating: no slot is still busy with the cancelled reply
    llama_url = server_service.settings.llm.server_url
    slot = rt.of("session.created")[0].data["slot"]
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {LLAMA_API_KEY}"}) as c:
        slots = (await c.get(f"{llama_url}/slots")).json()
    assert not next(s for s in slots if s["id"] == slot)["is_processing"]
