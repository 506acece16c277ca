"""The realtime turn figures the bench gate reads (`voicefleet bench --realtime-turns N`),
measured against the real service: first audio at 1 and at 2 sessions at once, barge-in over a
long reply, and the request with a 340 ms pause inside it answered once."""

from __future__ import annotations

import pytest

from app.bench import rt_turns
from app.bench.gate import figures
from app.bench.realtime import run_turns
from tests.app.conftest import API_KEY, Service

pytestmark = pytest.mark.slow


async def test_turn_figures_for_the_gate(server_service: Service) -> None:
    turns = await run_turns(server_service.url, API_KEY, rounds=1, sessions=2)
    one, many = turns["one_session"], turns["concurrent"]
    assert "weather" in one["transcript"].lower()
    # first audio comes after the end of speech, and within the turn's own time
    assert 0 < one["first_audio_p50_ms"] <= one["first_audio_p95_ms"] < 60_000
    assert one["server_p50"]["vad_end_to_first_audio_ms"] > 0
    assert (many["sessions"], many["turns"], many["errors"]) == (2, 2, 0)
    # barge-in: the user spoke over a long reply; it stopped, some time after speech began
    barge = turns["barge_in"]
    assert (barge["rounds"], barge["missed"]) == (1, 0), barge
    assert barge["how"][0] in ("cancelled", "playback_stopped")
    assert 0 < barge["reaction_p50_ms"] < 30_000
    f = figures({"realtime": {"turns": turns}})
    assert f["realtime_first_audio_p50_ms"] == one["first_audio_p50_ms"]
    assert f["realtime_concurrent_first_audio_p95_ms"] == many["first_audio_p95_ms"]
    assert f["realtime_barge_in_p50_ms"] == barge["reaction_p50_ms"]


async def test_a_request_with_a_pause_inside_is_answered_once(server_service: Service) -> None:
    sp = await rt_turns.speech(server_service.url, API_KEY)
    turn = await rt_turns.one_turn(server_service.url, API_KEY, sp.paused, sp.rate, 16)
    assert rt_turns.answered_once(turn), turn
