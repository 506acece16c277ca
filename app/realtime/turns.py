"""Turn detection over VAD windows: when did the user start, stop, and finish a request.

States: idle -> speaking (voiced for min_speech_ms; silent for early_stt_silence_ms is a
`pause`: the utterance so far may be transcribed already) -> paused (silent for end_silence_ms:
`speech_stopped`, the reply may start speculatively) -> idle (silent for commit_silence_ms in
all: `commit`, the turn is final). Speech while paused is `speech_resumed`: the pause was
inside one request (a breath between two sentences), so the speculative reply is dropped and
the audio keeps growing; the next stop covers both parts. Speech after a commit is a new
turn (`speech_started`), which is barge-in when a reply is still playing.

Silence hysteresis: a window counts as voiced at p >= threshold and as silent at
p < neg_threshold; in between it extends whatever run is in progress.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from app.engines.base import FloatAudio
from app.realtime.vad import WINDOW, WINDOW_MS
from app.settings import RealtimeSettings

# voiced windows that end a pause (64 ms): quicker than min_speech_ms, as the user is
# already known to be talking
RESUME_WINDOWS = 2

Kind = Literal["speech_started", "pause", "speech_stopped", "speech_resumed", "commit"]


@dataclass
class TurnConfig:
    """A session's turn detection: the detector's settings and what a detected turn does
    (OpenAI's server_vad `create_response` / `interrupt_response`)."""

    settings: RealtimeSettings
    create_response: bool = True
    interrupt_response: bool = True
    kind: str = "server_vad"


@dataclass
class TurnEvent:
    kind: Kind
    audio_ms: int  # the event's moment in the session's audio time
    audio: FloatAudio | None = None  # the utterance so far (pause, speech_stopped, commit)
    last_voiced_ms: int = 0  # end of the last voiced window


def _windows(ms: int) -> int:
    return max(1, math.ceil(ms / WINDOW_MS))


class TurnDetector:
    def __init__(self, cfg: RealtimeSettings) -> None:
        self.threshold = cfg.vad_threshold
        self.neg_threshold = cfg.vad_neg_threshold
        self.min_speech = _windows(cfg.min_speech_ms)
        self.end_silence = _windows(cfg.end_silence_ms)
        self.early_stt = _windows(cfg.early_stt_silence_ms) if cfg.early_stt_silence_ms else 0
        self.commit_silence = _windows(cfg.commit_silence_ms)
        self.max_windows = _windows(int(cfg.max_utterance_s * 1000))
        self.state: Literal["idle", "speaking", "paused"] = "idle"
        pad = cfg.speech_pad_ms // WINDOW_MS
        self._preroll: deque[FloatAudio] = deque(maxlen=pad + self.min_speech)
        self._utterance: list[FloatAudio] = []
        self._voiced_run = 0
        self._silence_run = 0
        self._window = 0  # windows processed
        self._last_voiced = 0  # window index after the last voiced one

    @property
    def audio_ms(self) -> int:
        return self._window * WINDOW_MS

    def feed(self, probs: npt.NDArray[np.float32], audio: FloatAudio) -> list[TurnEvent]:
        events: list[TurnEvent] = []
        for i, p in enumerate(probs.tolist()):
            event = self._step(p, audio[i * WINDOW : (i + 1) * WINDOW])
            self._window += 1
            if event is not None:
                events.extend(event)
        return events

    def _utterance_audio(self) -> FloatAudio:
        return np.concatenate(self._utterance).astype(np.float32, copy=False)

    def _event(self, kind: Kind, with_audio: bool = False) -> TurnEvent:
        return TurnEvent(
            kind,
            (self._window + 1) * WINDOW_MS,
            self._utterance_audio() if with_audio else None,
            self._last_voiced * WINDOW_MS,
        )

    def _track(self, p: float) -> None:
        if p >= self.threshold:
            self._voiced_run += 1
            self._silence_run = 0
            self._last_voiced = self._window + 1
        elif p < self.neg_threshold:
            self._voiced_run = 0
            self._silence_run += 1
        elif self._silence_run:
            self._silence_run += 1
        elif self._voiced_run:
            self._voiced_run += 1

    def _step(self, p: float, window: FloatAudio) -> list[TurnEvent] | None:
        self._track(p)
        if self.state == "idle":
            self._preroll.append(window)
            if self._voiced_run < self.min_speech:
                return None
            self.state = "speaking"
            self._utterance = list(self._preroll)
            self._preroll.clear()
            started = self._event("speech_started")
            started.audio_ms = (self._window + 1 - self._voiced_run) * WINDOW_MS
            return [started]
        self._utterance.append(window)
        if len(self._utterance) >= self.max_windows:
            # too long for one request: end it here
            events = [self._event("speech_stopped", True), self._event("commit", True)]
            self._reset()
            return events
        if self.state == "speaking":
            if self._silence_run >= self.end_silence:
                self.state = "paused"
                return [self._event("speech_stopped", True)]
            if self.early_stt and self._silence_run == self.early_stt:
                return [self._event("pause", True)]
            return None
        # paused
        if self._voiced_run >= RESUME_WINDOWS:
            self.state = "speaking"
            return [self._event("speech_resumed")]
        if self._silence_run >= self.commit_silence:
            event = self._event("commit", True)
            self._reset()
            return [event]
        return None

    def _reset(self) -> None:
        self.state = "idle"
        self._utterance = []
        self._voiced_run = 0
        self._silence_run = 0
