"""`voicefleet bench --realtime`'s first-audio section against the real service: the same
utterance through the OpenAI protocol, the first protocol and one-shot /v1/voice, with the
server's stage times from both protocols (the OpenAI one's from response.voicefleet_timings)."""

from __future__ import annotations

import pytest

from app.bench.realtime import SERVER_STAGES, run_first_audio
from tests.app.conftest import API_KEY, Service

pytestmark = pytest.mark.slow


async def test_first_audio_through_both_protocols(server_service: Service) -> None:
    fa = await run_first_audio(server_service.url, API_KEY, rounds=1, max_tokens=16)
    assert "bicycle" in fa["transcript"].lower()
    openai, first = fa["openai_first_audio_ms"], fa["streamed_first_audio_ms"]
    assert len(openai) == len(first) == len(fa["oneshot_first_audio_ms"]) == 1
    assert 0 < openai[0] < 60_000 and 0 < first[0] < 60_000
    assert fa["openai_minus_streamed_paired_p50_ms"] == round(openai[0] - first[0], 1)
    for key in ("server_p50", "openai_server_p50"):
        stages = fa[key]
        assert set(stages) == set(SERVER_STAGES)
        assert stages["stt_ms"] > 0
        # an early transcript (at a pause) can be ready at speech_stopped already: 0 ms
        assert 0 <= stages["vad_end_to_transcript_ms"] < stages["vad_end_to_first_audio_ms"]
    # the protocol's part: client time outside the server's last voiced -> first audio (it
    # holds a constant offset too: the client's level threshold vs Silero's end of speech)
    for arm in ("streamed", "openai"):
        assert abs(fa[f"{arm}_outside_engine_p50_ms"]) < fa[f"{arm}_p50_ms"]
