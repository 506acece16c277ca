"""The realtime building blocks without a service: sentence cuts, history trimming, turn
detection over VAD probabilities, the streaming VAD on real speech."""

from __future__ import annotations

import numpy as np
import pytest

from app.realtime.history import History
from app.realtime.sentences import SentenceChunker
from app.realtime.turns import TurnDetector
from app.realtime.vad import WINDOW, StreamingVAD
from app.settings import RealtimeSettings


def _stream(chunker: SentenceChunker, text: str, step: int = 3) -> list[str]:
    out: list[str] = []
    for i in range(0, len(text), step):
        out += chunker.push(text[i : i + step])
    return out + chunker.flush()


def test_sentences_cut_at_ends_not_at_abbreviations_or_decimals() -> None:
    text = "Dr. Smith paid 3.5 dollars. Really? Yes! The end"
    pieces = _stream(SentenceChunker(max_chars=160, first_min_chars=400), text)
    assert pieces == ["Dr. Smith paid 3.5 dollars.", "Really?", "Yes!", "The end"]


def test_first_piece_may_end_at_a_comma_and_no_piece_is_too_long() -> None:
    text = "Well, the first thing to know about bicycles, honestly, is this. " + "word " * 80
    pieces = _stream(SentenceChunker(max_chars=60, first_min_chars=30), text)
    assert pieces[0] == "Well, the first thing to know about bicycles,"
    assert all(len(p) <= 60 for p in pieces)
    assert " ".join(pieces).split() == text.split()


def test_history_keeps_system_prompt_and_trims_oldest_turns_in_one_block() -> None:
    h = History("You are brief.", ctx_per_slot=400, low_water=0.5)
    for i in range(40):
        h.add(f"question {i} " + "x" * 40, f"answer {i} " + "y" * 40)
        h.messages("next", max_tokens=64)
    assert h.trims >= 1
    prompt = h.messages("next", max_tokens=64)
    assert prompt[0] == {"role": "system", "content": "You are brief."}
    assert prompt[-1] == {"role": "user", "content": "next"}
    assert h.estimate("next") <= h.budget(64)
    # the kept turns are the newest, whole (user then assistant)
    assert prompt[-2]["content"].startswith("answer 39")
    assert [m["role"] for m in prompt[1:-1]] == ["user", "assistant"] * h.turns
    # between trims the prefix is stable: adding a turn changes nothing before it
    before = h.messages("next", max_tokens=64)[:-1]
    trims = h.trims
    h.add("short", "short")
    after = h.messages("again", max_tokens=64)
    if h.trims == trims:
        assert after[: len(before)] == before


def _detector(**kw: int) -> TurnDetector:
    return TurnDetector(RealtimeSettings(**kw))


def _feed(det: TurnDetector, pattern: list[tuple[float, int]]) -> list[str]:
    kinds: list[str] = []
    for prob, windows in pattern:
        probs = np.full(windows, prob, dtype=np.float32)
        kinds += [e.kind for e in det.feed(probs, np.zeros(windows * WINDOW, np.float32))]
    return kinds


def test_a_short_pause_merges_and_a_long_one_commits() -> None:
    det = _detector(end_silence_ms=224, commit_silence_ms=544)
    # 1 s speech, 300 ms pause, 1 s speech, 800 ms silence
    kinds = _feed(det, [(0.9, 31), (0.05, 9), (0.9, 31), (0.05, 25)])
    assert kinds == ["speech_started", "pause", "speech_stopped", "speech_resumed",
                     "pause", "speech_stopped", "commit"]  # fmt: skip


def test_a_pause_shorter_than_the_stop_is_offered_for_early_stt() -> None:
    det = _detector(early_stt_silence_ms=64, end_silence_ms=128, commit_silence_ms=544)
    # speech, a 64 ms gap (pause, speech goes on), speech, then the end of the request
    kinds = _feed(det, [(0.9, 10), (0.05, 2), (0.9, 10), (0.05, 2)])
    assert kinds == ["speech_started", "pause", "pause"]
    events = det.feed(np.full(20, 0.05, np.float32), np.zeros(20 * WINDOW, np.float32))
    assert [e.kind for e in events] == ["speech_stopped", "commit"]
    # the stop covers the same speech as the last pause: its transcript can be reused
    last_pause_voiced = (10 + 2 + 10) * 32
    assert events[0].last_voiced_ms == last_pause_voiced
    off = _detector(early_stt_silence_ms=0)
    assert "pause" not in _feed(off, [(0.9, 10), (0.05, 2), (0.9, 10), (0.05, 30)])
    with pytest.raises(ValueError, match="early_stt_silence_ms must be below"):
        RealtimeSettings(early_stt_silence_ms=128, end_silence_ms=128)


def test_first_piece_can_be_a_short_phrase() -> None:
    text = "The weather in Paris today is sunny with a light breeze. It is warm."
    pieces = _stream(SentenceChunker(max_chars=160, first_min_chars=10), text)
    assert pieces[0] == "The weather"
    assert " ".join(pieces).split() == text.split()


def test_blips_are_not_speech_and_long_speech_is_cut() -> None:
    det = _detector(min_speech_ms=128, max_utterance_s=2)
    assert _feed(det, [(0.9, 2), (0.05, 20)]) == []
    kinds = _feed(det, [(0.9, 100)])
    assert kinds[:3] == ["speech_started", "speech_stopped", "commit"]


@pytest.mark.slow
def test_streaming_vad_finds_speech_in_real_audio(speech_wav: bytes) -> None:
    from app.bench.pcm import silence, trim_silence, wav_pcm
    from app.realtime.audio_in import FrameDecoder

    pcm, rate = wav_pcm(speech_wav)
    audio = np.concatenate([silence(rate, 0.5), trim_silence(pcm, rate), silence(rate, 1.0)])
    decoder, vad, det = FrameDecoder(rate), StreamingVAD(), _detector()
    kinds = []
    step = rate // 50  # 20 ms frames
    for i in range(0, len(audio), step):
        probs, windows = vad.process(decoder.decode(audio[i : i + step].tobytes()))
        kinds += [(e.kind, e.audio_ms) for e in det.feed(probs, windows)]
    # pauses between words may come (early STT); the request is one, whole
    assert [k for k, _ in kinds if k != "pause"] == ["speech_started", "speech_stopped", "commit"]
    started = kinds[0][1]
    assert 300 <= started <= 800  # speech begins at 500 ms


async def test_outbox_refuses_a_reader_too_far_behind_and_drops_cancelled_turns() -> None:
    from app.realtime.outbox import Outbox, Outgoing, Overflow

    def audio(turn: int, size: int) -> Outgoing:
        return Outgoing({"type": "response.audio"}, b"\0" * size, turn=turn, droppable=True)

    box = Outbox(max_bytes=100_000)
    box.put_item(Outgoing({"type": "transcript", "text": "hi"}, turn=1))
    for _ in range(3):
        box.put_item(audio(1, 30_000))
    with pytest.raises(Overflow):
        box.put_item(audio(1, 30_000))
    assert box.drop_turn(1) == 3  # the reply audio goes, the other events stay
    assert (await box.get()).event["type"] == "transcript"
    box.put_item(audio(2, 90_000))  # room again
