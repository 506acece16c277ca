"""The seam between the realtime engine and a wire protocol.

The engine (session.py: audio in, turn detection, replies; respond.py: STT -> LLM -> TTS,
barge-in, history) knows nothing of event names. A protocol adapter is a `Wire`: it parses
what the client sends into calls on the engine (Session's public methods), and turns what it
reports into the messages its clients expect. Two adapters exist: the OpenAI Realtime API
(`openai_wire.py`, at /v1/realtime) and the project's first protocol (`voicefleet_wire.py`,
kept at /v1/voicefleet/realtime for the bench's comparison of the two).

Every hook returns the messages to send; the engine decides when (a speculative reply's
messages are held until its turn is committed) and drops queued reply audio on a cancel.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from app.realtime.outbox import Outgoing
from app.realtime.protocol import MAX_PROTOCOL_ERRORS

if TYPE_CHECKING:
    from app.realtime.respond import FunctionCall, Reply
    from app.realtime.session import Session

Status = Literal["completed", "cancelled", "failed", "incomplete"]


@dataclass(frozen=True)
class WireError:
    """An error to report to the client; `fatal`: the session closes after it."""

    code: str
    message: str
    fatal: bool = False
    event_id: str | None = None  # the client event it answers
    param: str | None = None  # the field at fault


class Wire(ABC):
    """One session's protocol adapter."""

    # bad client messages (each answered with an error event) before the session is closed
    max_protocol_errors = MAX_PROTOCOL_ERRORS

    def __init__(self, session: Session) -> None:
        self.session = session

    # --- client -> engine ---------------------------------------------------------------
    @abstractmethod
    def on_text(self, text: str) -> None:
        """A JSON text message from the client."""

    @abstractmethod
    def on_binary(self, data: bytes) -> None:
        """A binary message from the client."""

    # --- engine -> client ---------------------------------------------------------------
    @abstractmethod
    def session_created(self) -> list[Outgoing]: ...

    @abstractmethod
    def speech_started(self, audio_ms: int, item_id: str, resumed: bool) -> list[Outgoing]: ...

    @abstractmethod
    def speech_stopped(self, audio_ms: int, item_id: str) -> list[Outgoing]: ...

    @abstractmethod
    def input_committed(self, item_id: str, previous_id: str | None) -> list[Outgoing]:
        """The user's audio became a conversation item (its transcript follows)."""

    @abstractmethod
    def transcript(self, reply: Reply) -> list[Outgoing]:
        """The transcript of the reply's user audio (or its typed text) is known."""

    @abstractmethod
    def reply_started(self, reply: Reply) -> list[Outgoing]: ...

    @abstractmethod
    def text_delta(self, reply: Reply, delta: str) -> list[Outgoing]: ...

    def function_call_delta(self, reply: Reply, call: FunctionCall, delta: str) -> list[Outgoing]:
        """The reply's tool call `call` grew by `delta` (JSON arguments text)."""
        return []  # a protocol without function calling sends nothing

    @abstractmethod
    def audio(self, reply: Reply, pcm: bytes, sample_rate: int, piece: str) -> list[Outgoing]: ...

    @abstractmethod
    def reply_ended(self, reply: Reply, status: Status, reason: str) -> list[Outgoing]:
        """The one terminal message of a reply (done, or cancelled before it was done)."""

    @abstractmethod
    def timings(self, reply: Reply) -> list[Outgoing]: ...

    @abstractmethod
    def error(self, err: WireError) -> list[Outgoing]: ...
