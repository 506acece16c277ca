"""The OpenAI session.update mapping without a service: turn_detection onto the Silero
detector's settings, refused fields named, both API versions."""

from __future__ import annotations

import pytest

from app.realtime.openai_session import BadField, parse_session
from app.settings import RealtimeSettings

BASE = RealtimeSettings()


def test_server_vad_maps_onto_the_detector_and_keeps_the_speculative_start() -> None:
    td = {
        "type": "server_vad",
        "threshold": 0.6,
        "prefix_padding_ms": 300,
        "silence_duration_ms": 700,
        "create_response": False,
    }
    ga = {"type": "realtime", "audio": {"input": {"turn_detection": td}}}
    cfg = parse_session(ga, BASE, 256, beta=False).turn_detection
    assert cfg.settings.vad_threshold == 0.6
    assert cfg.settings.vad_neg_threshold == pytest.approx(0.45)
    assert cfg.settings.speech_pad_ms == 300
    assert cfg.settings.commit_silence_ms == 700
    assert cfg.settings.end_silence_ms == BASE.end_silence_ms  # the reply still starts early
    assert cfg.create_response is False and cfg.interrupt_response is True
    beta = parse_session({"turn_detection": td}, BASE, 256, beta=True).turn_detection
    assert beta.settings == cfg.settings


def test_semantic_vad_eagerness_and_null_turn_detection() -> None:
    low = {"turn_detection": {"type": "semantic_vad", "eagerness": "low"}}
    assert (
        parse_session(low, BASE, 256, beta=True).turn_detection.settings.commit_silence_ms == 1024
    )
    manual = parse_session({"turn_detection": None}, BASE, 256, beta=True)
    assert manual.sets_turn_detection and manual.turn_detection is None
    assert not parse_session({}, BASE, 256, beta=True).sets_turn_detection


@pytest.mark.parametrize(
    ("session", "beta", "param"),
    [
        ({"type": "realtime", "voicemail": 1}, False, "session.voicemail"),
        (
            {
                "type": "realtime",
                "audio": {"input": {"format": {"type": "audio/pcm", "rate": 7000}}},
            },
            False,
            "session.audio.input.format.rate",
        ),
        ({"input_audio_format": "g711_ulaw"}, True, "session.input_audio_format"),
        ({"max_response_output_tokens": 5000}, True, "session.max_response_output_tokens"),
        ({"tools": [{"type": "mcp", "name": "f"}]}, True, "session.tools[0]"),
        (
            {"turn_detection": {"type": "server_vad", "idle_timeout_ms": 5}},
            True,
            "session.turn_detection.idle_timeout_ms",
        ),
        ({"type": "transcription"}, False, "session.type"),
    ],
)
def test_unsupported_fields_are_refused_by_name(
    session: dict[str, object], beta: bool, param: str
) -> None:
    with pytest.raises(BadField) as info:
        parse_session(session, BASE, 256, beta=beta)
    assert info.value.param == param


def test_rates_modalities_and_token_limits() -> None:
    ch = parse_session(
        {
            "type": "realtime",
            "output_modalities": ["text"],
            "max_output_tokens": "inf",
            "audio": {
                "input": {"format": {"type": "audio/pcm", "rate": 48000}},
                "output": {"voice": "alloy"},
            },
        },
        BASE,
        256,
        beta=False,
    )
    assert (ch.input_rate, ch.audio_out, ch.max_tokens) == (48000, False, 256)
    beta = parse_session({"input_audio_format": "pcm16", "temperature": 0.2}, BASE, 256, True)
    assert (beta.input_rate, beta.temperature) == (24000, 0.2)
