"""The first realtime protocol (`voicefleet.v1`), served at /v1/voicefleet/realtime while
`voicefleet bench --realtime` compares it with the OpenAI Realtime API at /v1/realtime (the
protocol new clients use; docs/realtime.md). Both run the same engine; the adapter is
voicefleet_wire.py.

Connect: `GET /v1/voicefleet/realtime` as a WebSocket, authenticated *before* the upgrade with
either `Authorization: Bearer KEY` or, for browsers, the subprotocols `voicefleet.v1, bearer.KEY`
(the server accepts with `voicefleet.v1`). Refusals are plain HTTP answers in the OpenAI
error shape: 401 (no/invalid key), 503 + Retry-After (all sessions taken or engines loading).

Client -> server
- binary message: 16-bit little-endian PCM, mono, at the session's sample rate (default
  `realtime.default_sample_rate`, 16 kHz; other rates are resampled). Any length up to
  `realtime.max_frame_bytes`; 20-100 ms per message is typical.
- text message, one JSON object with a `type`:
  - `session.update` {sample_rate?, max_tokens?, temperature?}: before or between turns.
  - `input_text` {text}: a user turn as text (no STT), answered like speech.
  - `response.cancel`: stop the current reply (as barge-in does).
  - `ping`: answered with `pong`.

Server -> client: text messages (JSON events) and binary messages (reply audio). Every
binary message is announced by the `response.audio` event just before it.
- `session.created` {session_id, slot, input_sample_rate, output_sample_rate, limits}
- `session.updated` {input_sample_rate, max_tokens, temperature}
- `speech_started` {audio_ms}: the VAD heard speech (audio time since the session start).
- `speech_stopped` {audio_ms}: end-of-speech silence; the reply starts speculatively and is
  held back until `realtime.commit_silence_ms` of silence: speech resuming before that
  merges both parts into one request (a new `speech_started`, no reply for the first part).
- `transcript` {turn, text}: the committed request.
- `response.text.delta` {turn, delta}: reply text as the LLM streams it.
- `response.audio` {turn, bytes, sample_rate, text}: the next binary message is `bytes` of
  int16 PCM mono at `sample_rate`, part of the sentence `text`.
- `response.done` {turn, text, finish_reason}: the reply is complete (finish_reason
  `no_speech` when the utterance held no words).
- `response.cancelled` {turn, reason}: barge-in (`barge_in`), `response.cancel` (`client`)
  or an error; no further audio for that turn follows; drop what is queued for playback.
  A turn ends with exactly one of `response.done` and `response.cancelled`: a barge-in after
  `response.done` sends nothing more (the client stops its playback at `speech_started`).
- `turn.timings` {turn, ...ms}: per-turn latencies, see `TurnTimings`.
- `error` {code, message, fatal}: a fatal error is followed by a close with the code below.
- `pong`

Close codes: 1000 normal; 1008 protocol violations (after MAX_PROTOCOL_ERRORS garbage
messages, each first answered with an `error` event); 1009 a message larger than
`max_frame_bytes`; 1011 internal error; 4000 session longer than `max_session_s`; 4001 idle
for `idle_timeout_s`; 4002 slow reader (fell `max_send_buffer_bytes` behind).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

SUBPROTOCOL = "voicefleet.v1"
BEARER_PREFIX = "bearer."

CLOSE_NORMAL = 1000
CLOSE_PROTOCOL = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011
CLOSE_SESSION_TOO_LONG = 4000
CLOSE_IDLE = 4001
CLOSE_SLOW_READER = 4002

# garbage messages tolerated (each answered with an error event) before closing with 1008
MAX_PROTOCOL_ERRORS = 5


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SessionUpdate(_Event):
    type: Literal["session.update"]
    sample_rate: int | None = Field(None, ge=8000, le=48000)
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)


class InputText(_Event):
    type: Literal["input_text"]
    text: str = Field(min_length=1)


class ResponseCancel(_Event):
    type: Literal["response.cancel"]


class Ping(_Event):
    type: Literal["ping"]


ClientEvent = Annotated[
    SessionUpdate | InputText | ResponseCancel | Ping, Field(discriminator="type")
]
client_event: TypeAdapter[ClientEvent] = TypeAdapter(ClientEvent)


@dataclass
class TurnTimings:
    """Milliseconds. `vad_end` is the speech_stopped moment (end-of-speech silence seen);
    `last_voiced` is when the last voiced audio arrived (end_silence_ms earlier)."""

    turn: int
    stt_ms: float = 0.0
    vad_end_to_transcript_ms: float = 0.0
    vad_end_to_llm_first_token_ms: float = 0.0
    vad_end_to_first_audio_ms: float = 0.0
    last_voiced_to_first_audio_ms: float = 0.0
    llm_ttft_ms: float = 0.0
    total_ms: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    history_turns: int = 0
    speculative_restarts: int = 0
    # the transcript came from the pass started at a pause (realtime.early_stt_silence_ms)
    early_transcript: bool = False
    # of prompt_tokens, those llama-server found in the slot's cache: it evaluated only
    # prompt_tokens - prompt_cached_tokens at the end of speech
    prompt_cached_tokens: int = 0
    # prefills of the slot while the user spoke (realtime.prefill_llm) since the session's
    # previous reply, the prompt tokens they evaluated, and how long this reply's request
    # waited for one still running
    prefills: int = 0
    prefill_tokens: int = 0
    prefill_wait_ms: float = 0.0

    def fields(self) -> dict[str, Any]:
        return {k: round(v, 1) if isinstance(v, float) else v for k, v in asdict(self).items()}

    def event(self) -> dict[str, Any]:
        return {"type": "turn.timings", **self.fields()}


def error_event(code: str, message: str, fatal: bool = False) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message, "fatal": fatal}
